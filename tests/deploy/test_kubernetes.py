"""deploy/kubernetes: both overlays rendered by kubectl's kustomize, every object validated offline.

Each overlay is rendered with Debian's `kubectl kustomize` (scripts/ensure-services.sh installs
it; under CI a missing kubectl fails, locally it skips) and every object is validated with
kubernetes-validate's strict schemas for Kubernetes 1.32. The ServiceMonitor is a
prometheus-operator CRD with no schema there: its fields are checked here one by one. The rest
checks the manifests against the code: probe paths are routes of create_app (and answer), the
container port is where `serve` listens, every BEE_* name is a Settings field and the settings
load, pods run as the Dockerfile's numeric user, and the grace period outlasts serve's drain.
"""

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from bee_customers_service.cli import build_parser
from bee_customers_service.core.config import Settings
from tests.deploy import manifests
from tests.deploy.manifests import KUBERNETES, KUBERNETES_VERSION, OVERLAYS, Rendered, copy_tree, render

PREFIX = Settings.model_config["env_prefix"]
CRDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return copy_tree(tmp_path_factory.mktemp("deploy"))


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request, tree) -> Rendered:
    return Rendered(request.param, render(tree, request.param))


@pytest.mark.parametrize(("in_ci", "outcome"), [(True, pytest.fail.Exception), (False, pytest.skip.Exception)])
def test_a_missing_kubectl_fails_under_ci_and_skips_locally(monkeypatch, in_ci, outcome):
    monkeypatch.delenv("BEE_TEST_KUBECTL", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(manifests, "IN_CI", in_ci)
    with pytest.raises(outcome, match="no kubectl"):
        manifests.kubectl()


def test_every_object_validates_for_the_pinned_kubernetes(rendered):
    kinds = sorted(item["kind"] for item in rendered.objects)
    expected = ["ConfigMap", "ConfigMap", "Deployment", "Job", "NetworkPolicy", "PodDisruptionBudget"]
    expected += ["Secret", "Service", "ServiceMonitor"]
    if rendered.overlay == "production":
        expected.append("HorizontalPodAutoscaler")
    assert kinds == sorted(expected)
    for item in rendered.objects:
        if (item["apiVersion"], item["kind"]) in CRDS:
            continue
        # Raises ValidationError (an unknown field, a wrong type) or SchemaNotFoundError.
        assert kubernetes_validate.validate(item, KUBERNETES_VERSION, strict=True) == KUBERNETES_VERSION


def test_a_wrong_field_is_refused_by_the_validation(rendered):
    deployment = yaml.safe_load(yaml.safe_dump(rendered.deployment()))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["pathh"] = "/healthcheck"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_the_service_monitor_scrapes_metrics_with_the_secret_token(rendered, app):
    monitor = rendered.one("ServiceMonitor")
    service = rendered.one("Service")
    secret = rendered.one("Secret")
    assert set(monitor) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(monitor["spec"]) == {"selector", "endpoints"}
    labels = service["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "authorization"}
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert endpoint["path"] in _routes(app)
    assert all(endpoint[key][-1] == "s" and endpoint[key][:-1].isdigit() for key in ("interval", "scrapeTimeout"))
    assert int(endpoint["scrapeTimeout"][:-1]) <= int(endpoint["interval"][:-1])
    credentials = endpoint["authorization"]["credentials"]
    assert endpoint["authorization"]["type"] == "Bearer"
    # The generated Secret's hashed name, and the very key the service reads its token from.
    assert credentials["name"] == secret["metadata"]["name"]
    assert credentials["key"] == f"{PREFIX}METRICS_TOKEN"
    assert credentials["key"] in secret["data"]


def _routes(app: Any) -> set[str]:
    def paths(routes: list[Any], prefix: str) -> Iterator[str]:
        for route in routes:
            if hasattr(route, "path"):
                yield prefix + route.path
            else:  # FastAPI keeps an included router whole (include_router), with its prefix
                yield from paths(route.original_router.routes, prefix + route.include_context.prefix)

    found = set(paths(app.routes, ""))
    assert "/customers/{customer_id}" in found  # the walk reaches the included routers
    return found


async def test_probe_paths_are_routes_of_create_app_and_answer(rendered, app, client):
    container = rendered.api_container()
    probes = {name: container[name]["httpGet"] for name in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert probes["livenessProbe"]["path"] == "/healthcheck"
    assert probes["readinessProbe"]["path"] == "/readyz"
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    for probe in probes.values():
        assert probe["path"] in _routes(app)
        assert probe["port"] in ports
        assert (await client.get(probe["path"])).status_code == 200


def _serve_arguments(container: dict[str, Any]):
    command = container.get("command", []) + container.get("args", [])
    assert command[0] == "bee-customers"
    return build_parser().parse_args(command[1:])


def test_the_container_port_is_where_serve_listens(rendered):
    container = rendered.api_container()
    args = _serve_arguments(container)
    assert args.command == "serve"
    port = args.port or int(rendered.environment().get(f"{PREFIX}PORT", Settings.model_fields["port"].default))
    (declared,) = container["ports"]
    assert declared["containerPort"] == port
    runtime = manifests.dockerfile_runtime()
    assert ("EXPOSE", str(port)) in runtime
    (cmd,) = [yaml.safe_load(arguments) for keyword, arguments in runtime if keyword == "CMD"]
    assert build_parser().parse_args(cmd[1:]).port == port
    service = rendered.one("Service")
    assert [p["targetPort"] for p in service["spec"]["ports"]] == [declared["name"]]
    policy = rendered.one("NetworkPolicy")
    assert [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]] == [declared["name"]]


def test_every_bee_name_is_a_settings_field_and_the_settings_load(rendered, monkeypatch):
    environment = rendered.environment()
    examples = (KUBERNETES / "overlays" / rendered.overlay / "secrets.env.example").read_text()
    names = set(environment) | {line.split("=", 1)[0] for line in examples.splitlines() if "=" in line}
    names |= {key for key in manifests.dockerfile_environment() if key.startswith(PREFIX)}
    assert {name for name in names if not name.startswith(PREFIX)} == set()
    unknown = {name for name in names if name[len(PREFIX) :].lower() not in Settings.model_fields}
    assert unknown == set()
    # What a pod would load: the image's ENV, then the ConfigMap and the Secret over it.
    for name in list(Settings.model_fields):
        monkeypatch.delenv(f"{PREFIX}{name.upper()}", raising=False)
    for name, value in {**manifests.dockerfile_environment(), **environment}.items():
        monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.environment == "production"
    assert settings.database_url and settings.rabbitmq_url and settings.redis_url
    # The relay and both consumers run inside every API replica (README "Deploying on Kubernetes").
    assert settings.relay_enabled and settings.activity_consumer_enabled and settings.auth_consumer_enabled
    assert settings.metrics_token is not None


def test_pods_run_as_the_dockerfiles_user_on_a_read_only_root(rendered):
    uid, gid = manifests.dockerfile_user()
    for spec in rendered.pod_specs():
        context = spec["securityContext"]
        assert (context["runAsNonRoot"], context["runAsUser"], context["runAsGroup"]) == (True, uid, gid)
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        for container in spec["containers"] + spec.get("initContainers", []):
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"] == {"drop": ["ALL"]}
            assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]


def _writable_paths(spec: dict[str, Any], container: dict[str, Any]) -> set[str]:
    writable = {volume["name"] for volume in spec.get("volumes", []) if "emptyDir" in volume}
    return {mount["mountPath"] for mount in container.get("volumeMounts", []) if mount["name"] in writable}


def test_the_app_writes_only_to_its_mounted_volumes(rendered):
    settings = {**manifests.dockerfile_environment(), **rendered.environment()}
    storage = settings.get(f"{PREFIX}AVATAR_STORAGE", Settings.model_fields["avatar_storage"].default)
    spec = rendered.deployment()["spec"]["template"]["spec"]
    for container in spec["containers"] + spec.get("initContainers", []):
        assert "/tmp" in _writable_paths(spec, container)  # noqa: S108 (the pod's own emptyDir)
    for job in rendered.of_kind("Job"):
        (container,) = job["spec"]["template"]["spec"]["containers"]
        assert "/tmp" in _writable_paths(job["spec"]["template"]["spec"], container)  # noqa: S108
    api_writes = _writable_paths(spec, rendered.api_container())
    data_dir = settings[f"{PREFIX}DATA_DIR"]
    if rendered.overlay == "production":
        # Replicas share nothing on disk: avatars go to S3.
        assert storage == "s3" and settings[f"{PREFIX}S3_BUCKET"]
        assert data_dir not in api_writes
    else:
        assert storage == "local"
        assert data_dir in api_writes


def test_termination_grace_outlasts_prestop_and_the_graceful_shutdown(rendered):
    container = rendered.api_container()
    graceful_timeout = _serve_arguments(container).graceful_timeout  # serve's own default unless given
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    grace = rendered.deployment()["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > int(command[1]) + graceful_timeout


def test_replicas_autoscaling_and_disruption_budget(rendered):
    deployment = rendered.deployment()
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert rendered.one("Service")["spec"]["selector"].items() <= pod_labels.items()
    budget = rendered.one("PodDisruptionBudget")["spec"]
    assert budget["selector"]["matchLabels"].items() <= pod_labels.items()
    policy = rendered.one("NetworkPolicy")["spec"]["podSelector"]["matchLabels"]
    for spec_owner in rendered.of_kind("Deployment") + rendered.of_kind("Job"):  # the API and the migration
        assert policy.items() <= spec_owner["spec"]["template"]["metadata"]["labels"].items()
    if rendered.overlay == "dev":
        assert deployment["spec"]["replicas"] == 1
        assert rendered.of_kind("HorizontalPodAutoscaler") == []
        assert budget == {"maxUnavailable": 1, "selector": budget["selector"]}  # never blocks a drain
    else:
        autoscaler = rendered.one("HorizontalPodAutoscaler")["spec"]
        assert "replicas" not in deployment["spec"]  # the autoscaler owns the count
        assert autoscaler["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": deployment["metadata"]["name"],
        }
        assert autoscaler["minReplicas"] >= 3 and autoscaler["maxReplicas"] > autoscaler["minReplicas"]
        assert 1 <= budget["minAvailable"] < autoscaler["minReplicas"]
        assert rendered.api_container()["resources"]["requests"]["cpu"]  # the HPA's utilisation needs it


def test_the_migration_job_is_named_after_the_release_and_gates_the_pods(rendered):
    (job,) = rendered.of_kind("Job")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert job["metadata"]["name"] == f"bee-customers-migrate-{rendered.tag}"
    assert container["image"] == rendered.api_container()["image"]
    assert build_parser().parse_args(container["command"][1:]).command == "migrate"
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    # The API pods' init container runs the committed wait_for_schema.py from the ConfigMap.
    spec = rendered.deployment()["spec"]["template"]["spec"]
    (init,) = spec["initContainers"]
    assert init["image"] == container["image"]
    script = Path(init["command"][-1])
    (volume,) = [v for v in spec["volumes"] if "configMap" in v]
    (mount,) = [m for m in init["volumeMounts"] if m["name"] == volume["name"]]
    assert script.parent == Path(mount["mountPath"])
    (config_map,) = [c for c in rendered.of_kind("ConfigMap") if c["metadata"]["name"] == volume["configMap"]["name"]]
    assert config_map["data"][script.name] == (KUBERNETES / "base" / script.name).read_text()


def test_a_new_image_tag_is_a_new_migration_job(tree):
    kustomization = tree / "overlays" / "production" / "kustomization.yaml"
    original = kustomization.read_text()
    document = yaml.safe_load(original)
    document["images"][0]["newTag"] = "9.9.9-rc1"
    kustomization.write_text(yaml.safe_dump(document))
    try:
        release = Rendered("production", render(tree, "production"))
    finally:
        kustomization.write_text(original)
    assert release.tag == "9.9.9-rc1"
    assert release.one("Job")["metadata"]["name"] == "bee-customers-migrate-9.9.9-rc1"
