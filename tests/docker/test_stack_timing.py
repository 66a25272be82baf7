"""What gates what in the compose stack, now that nothing waits for Ollama's healthcheck.

The tools wait for the server themselves (polling fast, with a deadline), so the stack's order is: the server
starts; the puller (and the test-only seed) start with it and wait for it; the preloader starts only once the
puller has exited 0. These tests check that structure and that order on the engine's own event clock, and
that the puller's wait has a deadline. They assert no durations: `python -m bench --only stack` measures
those (up → resident against the floor).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.docker.conftest import REPO_ROOT, SMOLLM2
from tests.docker.test_compose_stack import (  # noqa: F401  (compose_cli: a fixture)
    Stack,
    compose_cli,
    compose_stack,
)

pytestmark = pytest.mark.docker

SHIPPED = [REPO_ROOT / "docker-compose.yml", REPO_ROOT / "docker-compose.keeper.yml"]


def _config(compose: list[str], files: list[Path]) -> dict[str, Any]:
    args = [*compose]
    for path in files:
        args += ["-f", str(path)]
    result = subprocess.run(
        [*args, "config", "--format", "json"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_no_service_waits_for_ollamas_healthcheck_and_the_preloader_waits_for_the_puller_to_succeed(
    compose_cli: list[str],  # noqa: F811
) -> None:
    services = _config(compose_cli, SHIPPED)["services"]
    conditions = {
        (name, dependency): spec["condition"]
        for name, service in services.items()
        for dependency, spec in (service.get("depends_on") or {}).items()
    }

    assert conditions == {
        ("model_puller", "ollama"): "service_started",
        ("model_preloader", "ollama"): "service_started",
        ("model_preloader", "model_puller"): "service_completed_successfully",
    }
    # Users' own services may still wait for `service_healthy` on the server: its healthcheck stays.
    assert services["ollama"]["healthcheck"]["test"] == ["CMD", "ollama", "list"]


def test_the_keeper_healthcheck_uses_no_option_that_engine_20_10_refuses(compose_cli: list[str]) -> None:  # noqa: F811
    check = _config(compose_cli, SHIPPED)["services"]["model_preloader"]["healthcheck"]

    assert "start_interval" not in check  # Engine < 25 refuses the whole file
    assert check["test"][:3] == ["CMD", "bash", "-c"]  # no python start-up per probe
    assert "/dev/tcp/127.0.0.1/9464" in check["test"][3] and "/ready" in check["test"][3]


def _first(stack: Stack, service: str, action: str) -> float:
    times = [
        int(e["timeNano"]) / 1e9
        for e in stack.events
        if e.get("Action") == action and e["Actor"]["Attributes"].get("com.docker.compose.service") == service
    ]
    assert times, f"no '{action}' event for {service}\n{stack.describe()}"
    return min(times)


def test_up_starts_the_puller_with_the_server_and_the_preloader_only_after_the_puller_exited_0(
    compose_cli: list[str],  # noqa: F811
    docker_client: Any,
    smollm2_file: Path,
    tmp_path: Path,
) -> None:
    with compose_stack(compose_cli, smollm2_file, tmp_path, SMOLLM2) as stack:
        stack.up = stack.compose("up", "--detach", "--build")
        assert stack.up.returncode == 0, stack.describe()
        status = stack.container(docker_client, "model_preloader").wait(timeout=600)
        stack.record(docker_client)

        assert status["StatusCode"] == 0, stack.describe()
        server = _first(stack, "ollama", "start")
        seed_done = _first(stack, "model_seed", "die")
        puller_started, puller_done = _first(stack, "model_puller", "start"), _first(stack, "model_puller", "die")
        preloader_started = _first(stack, "model_preloader", "start")
        # The puller runs its script only once the seeded model is listed, so it cannot finish before the seed.
        assert server < puller_started and seed_done <= puller_done < preloader_started, stack.describe()
        puller_logs = stack.compose("logs", "--no-color", "model_puller").stdout
        assert f"model_puller: {SMOLLM2} is present" in puller_logs, puller_logs
        # Found present, so never pulled (the registry is unreachable here: a pull would have failed the run).
        server_logs = stack.compose("logs", "--no-color", "ollama").stdout
        assert "/api/pull" not in server_logs, server_logs[-3000:]


def test_the_puller_gives_up_with_a_message_when_the_server_never_answers_within_its_deadline(
    compose_cli: list[str],  # noqa: F811
    smollm2_file: Path,
    tmp_path: Path,
) -> None:
    # The shipped file alone, the puller run without its dependencies: the name `ollama` never resolves.
    with compose_stack(compose_cli, smollm2_file, tmp_path, SMOLLM2, seed=False) as stack:
        run = stack.compose(
            "run", "--rm", "--no-deps", "-e", "OLLAMA_PRELOAD_WAIT_TIMEOUT=2s", "model_puller", timeout=120
        )

        printed = run.stdout + run.stderr
        assert run.returncode == 1, printed
        assert "model_puller: the server at ollama:11434 did not answer within 2 s" in printed, printed
