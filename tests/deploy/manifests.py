"""Rendering deploy/kubernetes with kubectl's built-in kustomize, and reading what it renders.

The overlays read a `secrets.env` that is never committed: the tree is copied to a temporary
folder (without any local secrets.env) and each overlay gets one made from its
secrets.env.example, with random keys in place of the placeholders.
"""

import os
import secrets
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.services import IN_CI

ROOT = Path(__file__).resolve().parent.parent.parent
KUBERNETES = ROOT / "deploy" / "kubernetes"
DOCKERFILE = ROOT / "Dockerfile"
OVERLAYS = ("dev", "production")
# The Kubernetes version the objects are validated for (kubernetes-validate's schemas, strict).
KUBERNETES_VERSION = "1.32"
PLACEHOLDER = "replace-me"


def kubectl() -> str:
    override = os.environ.get("BEE_TEST_KUBECTL")
    found = override or shutil.which("kubectl")
    if found:
        return found
    message = "no kubectl (apt-get install kubectl, or scripts/ensure-services.sh)"
    if IN_CI:
        pytest.fail(f"{message}; CI needs it", pytrace=False)
    pytest.skip(message)


def copy_tree(destination: Path) -> Path:
    """deploy/kubernetes copied to `destination`, each overlay with a filled-in secrets.env."""
    tree = destination / "kubernetes"
    shutil.copytree(KUBERNETES, tree, ignore=shutil.ignore_patterns("secrets.env", "__pycache__"))
    for overlay in OVERLAYS:
        example = (tree / "overlays" / overlay / "secrets.env.example").read_text().splitlines()
        lines = [
            line.removesuffix(PLACEHOLDER) + secrets.token_urlsafe(48) if line.endswith(f"={PLACEHOLDER}") else line
            for line in example
        ]
        (tree / "overlays" / overlay / "secrets.env").write_text("\n".join(lines) + "\n")
    return tree


def render(tree: Path, overlay: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        [kubectl(), "kustomize", str(tree / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [document for document in yaml.safe_load_all(result.stdout) if document]


@dataclass
class Rendered:
    """One overlay's objects, with the look-ups the tests share."""

    overlay: str
    objects: list[dict[str, Any]]
    tag: str = field(init=False)

    def __post_init__(self) -> None:
        self.tag = self.api_container()["image"].rsplit(":", 1)[1]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [item for item in self.objects if item["kind"] == kind]

    def one(self, kind: str) -> dict[str, Any]:
        (item,) = self.of_kind(kind)
        return item

    def deployment(self) -> dict[str, Any]:
        return self.one("Deployment")

    def api_container(self) -> dict[str, Any]:
        (container,) = [c for c in self.deployment()["spec"]["template"]["spec"]["containers"] if c["name"] == "api"]
        return container

    def pod_specs(self) -> list[dict[str, Any]]:
        return [item["spec"]["template"]["spec"] for item in self.of_kind("Deployment") + self.of_kind("Job")]

    def environment(self) -> dict[str, str]:
        """Every variable the pods get: the ConfigMap's, the Secret's (decoded) and any `env`."""
        import base64

        values: dict[str, str] = {}
        names = {item["metadata"]["name"]: item for item in self.of_kind("ConfigMap") + self.of_kind("Secret")}
        for spec in self.pod_specs():
            for container in spec["containers"] + spec.get("initContainers", []):
                for source in container.get("envFrom", []):
                    if "configMapRef" in source:
                        values.update(names[source["configMapRef"]["name"]]["data"])
                    if "secretRef" in source:
                        data = names[source["secretRef"]["name"]]["data"]
                        values.update({k: base64.b64decode(v).decode() for k, v in data.items()})
                values.update({item["name"]: item.get("value", "") for item in container.get("env", [])})
        return values


def dockerfile_runtime() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile's last stage, continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or (line.startswith("#") and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    last_from = max(index for index, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def dockerfile_user() -> tuple[int, int]:
    """The runtime stage's USER as (uid, gid): numbers, created with the same ids by useradd."""
    runtime = dockerfile_runtime()
    user = [arguments for keyword, arguments in runtime if keyword == "USER"][-1]
    uid, gid = (int(part) for part in user.split(":"))
    created = " ".join(arguments for keyword, arguments in runtime if keyword == "RUN")
    words = shlex.split(created)
    assert words[words.index("--uid") + 1] == str(uid), "USER is not the uid useradd creates"
    assert words[words.index("--gid") + 1] == str(gid), "USER's group is not the gid groupadd creates"
    return uid, gid


def dockerfile_environment() -> dict[str, str]:
    values: dict[str, str] = {}
    for keyword, arguments in dockerfile_runtime():
        if keyword == "ENV":
            values.update(item.split("=", 1) for item in shlex.split(arguments))
    return values
