"""The chart against a real kube-apiserver (+ etcd) on loopback: server-side dry runs catch what schemas miss."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.kubernetes.conftest import CHART, DATA, MANIFESTS, Cluster

pytestmark = pytest.mark.kubernetes


def test_plain_manifests_pass_a_server_side_dry_run(apiserver: Cluster, namespace: str) -> None:
    for name in ("ollama-preloader.yaml", "warm-job.yaml"):
        result = apiserver.kubectl(
            "apply", "--dry-run=server", "-n", namespace, "-f", str(MANIFESTS / name), check=False
        )
        assert result.returncode == 0, f"{name}: {result.stderr}"
        assert "(server dry run)" in result.stdout


def test_helm_install_dry_run_server_accepts_every_feature_but_the_missing_crd(
    apiserver: Cluster, namespace: str
) -> None:
    result = apiserver.helm(
        "install", "t", str(CHART), "-n", namespace, "--dry-run=server",
        "-f", str(DATA / "all-features.yaml"), "--set", "serviceMonitor.enabled=false",
    )  # fmt: skip
    assert "STATUS: pending-install" in result.stdout, result.stdout
    # Without the Prometheus Operator's CRD, asking for a ServiceMonitor fails at install, with the kind named.
    refused = apiserver.helm(
        "install", "t", str(CHART), "-n", namespace, "--dry-run=server", "--set", "serviceMonitor.enabled=true",
        check=False,
    )  # fmt: skip
    assert refused.returncode != 0 and "ServiceMonitor" in refused.stderr, refused.stderr


def test_bad_values_fail_helm_install_before_anything_is_sent(apiserver: Cluster, namespace: str) -> None:
    result = apiserver.helm(
        "install", "t", str(CHART), "-n", namespace, "-f", str(DATA / "bad-values" / "sidecar-startup-probe.yaml"),
        check=False,
    )  # fmt: skip
    assert result.returncode != 0 and "startupProbe" in result.stderr
    assert apiserver.get_json("all", "-n", namespace)["items"] == []


@pytest.mark.parametrize("name", ["job-restart-always.yaml", "probe-port-name-too-long.yaml"])
def test_api_server_refuses_what_every_schema_accepts(apiserver: Cluster, namespace: str, name: str) -> None:
    result = apiserver.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", str(DATA / "bad-manifests" / name), check=False
    )
    assert result.returncode != 0
    assert "is invalid" in result.stderr, result.stderr


def test_sidecar_patch_applies_to_a_deployment_on_the_server(apiserver: Cluster, namespace: str) -> None:
    apiserver.kubectl("apply", "-n", namespace, "-f", str(DATA / "ollama-deployment.yaml"))
    apiserver.kubectl(
        "patch", "deployment", "ollama", "-n", namespace, "--patch-file", str(MANIFESTS / "sidecar-patch.yaml")
    )
    deployment = apiserver.get_json("deployment", "ollama", "-n", namespace)
    pod = deployment["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["ollama"]
    (sidecar,) = pod["initContainers"]
    assert sidecar["restartPolicy"] == "Always"
    assert sidecar["readinessProbe"]["httpGet"]["path"] == "/ready"
    # Patching twice changes nothing: the sidecar is merged by name, not appended.
    again = apiserver.kubectl(
        "patch", "deployment", "ollama", "-n", namespace, "--patch-file", str(MANIFESTS / "sidecar-patch.yaml")
    )
    assert "no change" in again.stdout, again.stdout


def test_warm_job_of_a_new_release_is_created_and_an_upgrade_with_new_models_replaces_it(
    apiserver: Cluster, namespace: str, tmp_path: Path
) -> None:
    """A Job's pod template is immutable: the digest in its name makes an upgrade create a new one."""
    common = ["-n", namespace, "--set", "warmJob.enabled=true", "--set", "replicaCount=0"]
    apiserver.helm("install", "t", str(CHART), *common)
    first = [job["metadata"]["name"] for job in apiserver.get_json("jobs", "-n", namespace)["items"]]
    apiserver.helm("upgrade", "t", str(CHART), *common, "--set", "models[0]=llama3.2")
    second = [job["metadata"]["name"] for job in apiserver.get_json("jobs", "-n", namespace)["items"]]
    assert len(first) == 1 and len(second) == 1 and first != second, (first, second)
    pod = apiserver.get_json("job", second[0], "-n", namespace)["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["OLLAMA_PRELOAD_MODELS"] == "llama3.2"
    apiserver.helm("uninstall", "t", "-n", namespace, "--wait", "--timeout", "60s")
    assert json.loads(apiserver.kubectl("get", "jobs", "-n", namespace, "-o", "json").stdout)["items"] == []
