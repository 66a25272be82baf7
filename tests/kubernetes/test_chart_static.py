"""The chart without a cluster: lint, schemas (kubeconform and kubernetes-validate), values.schema.json, and
the plain manifests and sidecar patch rendered from it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kubernetes.conftest import CHART, DATA, MANIFESTS, NEWEST_SCHEMA, REPO_ROOT, SCHEMA_VERSIONS, Tools

pytestmark = pytest.mark.kubernetes

BAD_VALUES = sorted((DATA / "bad-values").glob("*.yaml"))
BAD_MANIFESTS = sorted((DATA / "bad-manifests").glob("*.yaml"))
# Refused only by the API server (tests/kubernetes/test_chart_apiserver.py): every schema accepts them.
SERVER_ONLY = {"job-restart-always.yaml", "probe-port-name-too-long.yaml"}


def docs(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def kind(rendered: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (found,) = [doc for doc in rendered if doc["kind"] == name]
    return found


def pod_spec(rendered: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = kind(rendered, "StatefulSet")["spec"]["template"]["spec"]
    return spec


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item.get("value", "") for item in container.get("env", [])}


def kubeconform(tools: Tools, path: Path, version: str = NEWEST_SCHEMA) -> subprocess.CompletedProcess[str]:
    location = f"{tools.schemas}/{{{{ .NormalizedKubernetesVersion }}}}-standalone{{{{ .StrictSuffix }}}}/"
    location += "{{ .ResourceKind }}{{ .KindSuffix }}.json"
    # The ServiceMonitor is a CRD with no schema here; skipping it by kind keeps every other kind checked
    # (-ignore-missing-schemas would also hide a schema tree kubeconform cannot read).
    return tools.run(
        "kubeconform",
        "-strict",
        "-summary",
        "-kubernetes-version",
        version,
        "-schema-location",
        location,
        "-skip",
        "ServiceMonitor",
        str(path),
    )


def kubernetes_validate(tools: Tools, path: Path, version: str = NEWEST_SCHEMA) -> subprocess.CompletedProcess[str]:
    return tools.run("kubernetes-validate", "-k", version, "--strict", str(path))


def test_chart_refuses_a_cluster_older_than_native_sidecars(tools: Tools) -> None:
    result = tools.run("helm", "template", "t", str(CHART), "--kube-version", "1.28.9")
    assert result.returncode != 0 and ">=1.29.0-0" in result.stderr, result.stderr


def test_helm_lint_strict_passes_with_defaults_and_with_every_feature_on(tools: Tools) -> None:
    for args in ([], ["-f", str(DATA / "all-features.yaml")]):
        result = tools.run("helm", "lint", "--strict", str(CHART), *args)
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
@pytest.mark.parametrize("values", [None, DATA / "all-features.yaml"], ids=["defaults", "all-features"])
def test_rendered_chart_passes_kubeconform_and_kubernetes_validate_strict(
    tools: Tools, tmp_path: Path, values: Path | None, version: str
) -> None:
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(tools.helm_template("--kube-version", version, values=[values] if values else []))
    checked = kubeconform(tools, rendered, version)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # A schema tree kubeconform cannot read is reported as "could not find schema", not as a failure.
    assert "could not find schema" not in checked.stdout + checked.stderr
    assert "Invalid: 0, Errors: 0" in checked.stdout, checked.stdout
    for doc in docs(rendered.read_text()):
        if doc["kind"] == "ServiceMonitor":
            continue  # a CRD: kubernetes-validate has no schema for it either
        single = tmp_path / f"{doc['kind']}.yaml"
        single.write_text(yaml.safe_dump(doc))
        validated = kubernetes_validate(tools, single, version)
        assert validated.returncode == 0, f"{doc['kind']}: {validated.stdout}{validated.stderr}"


@pytest.mark.parametrize("manifest", [p for p in BAD_MANIFESTS if p.name not in SERVER_ONLY], ids=lambda p: p.stem)
def test_broken_manifest_is_rejected_by_both_schema_checkers(tools: Tools, manifest: Path) -> None:
    checked = kubeconform(tools, manifest)
    # "is invalid": a validation failure, not a schema kubeconform could not find or read.
    assert checked.returncode != 0 and " is invalid: " in checked.stdout, checked.stdout
    assert kubernetes_validate(tools, manifest).returncode != 0


def test_the_schema_checkers_accept_what_only_the_api_server_refuses(tools: Tools) -> None:
    """Why the API server tier exists: these pass every offline schema (see test_chart_apiserver.py)."""
    for name in sorted(SERVER_ONLY):
        assert kubeconform(tools, DATA / "bad-manifests" / name).returncode == 0, name


@pytest.mark.parametrize("values", BAD_VALUES, ids=lambda p: p.stem)
def test_values_schema_rejects_bad_values_naming_the_offending_value(tools: Tools, values: Path) -> None:
    expected = values.read_text().splitlines()[0].removeprefix("# expect: ")
    result = tools.run("helm", "template", "t", str(CHART), "-f", str(values))
    assert result.returncode != 0, f"{values.name} was accepted"
    assert "values don't meet the specifications of the schema" in result.stderr
    assert expected in result.stderr, result.stderr


def test_sidecar_is_a_native_sidecar_with_readiness_on_ready_and_no_startup_probe(tools: Tools) -> None:
    pod = pod_spec(docs(tools.helm_template()))
    (sidecar,) = pod["initContainers"]
    assert sidecar["restartPolicy"] == "Always"
    assert sidecar["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "metrics"}
    assert sidecar["livenessProbe"]["httpGet"] == {"path": "/live", "port": "metrics"}
    assert "startupProbe" not in sidecar
    assert all("startupProbe" not in c for c in pod["containers"])
    env = env_of(sidecar)
    assert env["OLLAMA_PRELOAD_MODE"] == "watch"
    assert env["OLLAMA_HOST"] == "http://localhost:11434"
    assert env["OLLAMA_PRELOAD_PULL"] == "missing"
    context = sidecar["securityContext"]
    assert context["runAsNonRoot"] is True and context["readOnlyRootFilesystem"] is True


def test_model_list_goes_to_the_preloader_and_the_models_directory_to_ollama(tools: Tools) -> None:
    rendered = docs(tools.helm_template(values=[DATA / "all-features.yaml"]))
    pod = pod_spec(rendered)
    (ollama,) = pod["containers"]
    models = (
        "smollm2:135m,llama3.2:3b?keep_alive=1h&prompt=Say+hi&num_ctx=8192&temperature=0,nomic-embed-text?keep_alive=-1"
    )
    assert env_of(pod["initContainers"][0])["OLLAMA_PRELOAD_MODELS"] == models
    assert env_of(ollama)["OLLAMA_MODELS"] == "/root/.ollama/models"
    assert env_of(ollama)["OLLAMA_MAX_LOADED_MODELS"] == "3"
    assert env_of(ollama)["OLLAMA_NUM_PARALLEL"] == "2"
    assert env_of(ollama)["OLLAMA_KEEP_ALIVE"] == "10m"
    assert ollama["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert ollama["resources"]["limits"]["memory"] == "16Gi"
    job_pod = kind(rendered, "Job")["spec"]["template"]["spec"]
    job_env = env_of(job_pod["containers"][0])
    assert job_env["OLLAMA_PRELOAD_MODELS"] == models
    assert job_env["OLLAMA_PRELOAD_RESOLVE"] == "all"
    assert job_env["OLLAMA_HOST"] == "http://t-ollama-preloader-headless:11434"


def test_headless_service_publishes_not_ready_pods_and_the_client_service_does_not(tools: Tools) -> None:
    services = {doc["metadata"]["name"]: doc for doc in docs(tools.helm_template()) if doc["kind"] == "Service"}
    assert services["t-ollama-preloader-headless"]["spec"]["clusterIP"] == "None"
    assert services["t-ollama-preloader-headless"]["spec"]["publishNotReadyAddresses"] is True
    assert "publishNotReadyAddresses" not in services["t-ollama-preloader"]["spec"]
    assert services["t-ollama-preloader"]["spec"]["type"] == "ClusterIP"


def test_persistence_gives_each_replica_its_own_claim(tools: Tools) -> None:
    statefulset = kind(docs(tools.helm_template("--set", "persistence.enabled=true")), "StatefulSet")
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "models"
    assert all(v["name"] != "models" for v in statefulset["spec"]["template"]["spec"]["volumes"])


def test_warm_job_name_changes_with_its_pod_so_an_upgrade_never_patches_an_immutable_job(tools: Tools) -> None:
    def job_name(*args: str) -> str:
        name: str = kind(docs(tools.helm_template("--set", "warmJob.enabled=true", *args)), "Job")["metadata"]["name"]
        return name

    assert job_name() == job_name()
    assert job_name() != job_name("--set", "models[0]=llama3.2")


def test_plain_manifests_are_what_the_chart_renders(tools: Tools) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "render_manifests.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PRELOADER_K8S_BIN": str(tools.bin)},
    )
    assert result.returncode == 0, f"deploy/kubernetes is stale: {result.stderr}"


def test_plain_manifests_pass_kubeconform_strict(tools: Tools) -> None:
    for path in sorted(MANIFESTS.glob("*.yaml")):
        if path.name == "sidecar-patch.yaml":
            continue  # a patch, not an object: checked once applied, below
        checked = kubeconform(tools, path)
        assert checked.returncode == 0, f"{path.name}: {checked.stdout}{checked.stderr}"


def test_sidecar_patch_adds_only_the_sidecar_to_an_existing_deployment(tools: Tools, tmp_path: Path) -> None:
    patched = tools.run(
        "kubectl",
        "patch",
        "--local",
        "-f",
        str(DATA / "ollama-deployment.yaml"),
        "--type",
        "strategic",
        "--patch-file",
        str(MANIFESTS / "sidecar-patch.yaml"),
        "-o",
        "yaml",
        check=True,
    ).stdout
    result = yaml.safe_load(patched)
    original = yaml.safe_load((DATA / "ollama-deployment.yaml").read_text())
    pod = result["spec"]["template"]["spec"]
    assert pod["containers"] == original["spec"]["template"]["spec"]["containers"]
    (sidecar,) = pod["initContainers"]
    assert sidecar["name"] == "preloader" and sidecar["restartPolicy"] == "Always"
    assert {v["name"] for v in pod["volumes"]} == {"models", "preloader-tmp"}
    out = tmp_path / "patched.yaml"
    out.write_text(patched)
    checked = kubeconform(tools, out)
    assert checked.returncode == 0, checked.stdout + checked.stderr
