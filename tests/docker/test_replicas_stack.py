"""The compose stack with `ollama` scaled to three replicas and `OLLAMA_PRELOAD_RESOLVE=all`: the preloader
finds every replica behind the service name and warms each one, as each container's own `/api/ps` shows.

The stack is the project's docker-compose.yml with the same test overrides as `test_compose_stack.py` (offline
server, seeded model) plus `compose.replicas-test.yml` (three replicas, no published port, resolve all).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.docker.conftest import SMOLLM2
from tests.docker.test_compose_stack import Stack, compose_cli, compose_stack  # noqa: F401  (compose_cli: fixture)

pytestmark = pytest.mark.docker

REPLICAS_OVERRIDE = Path(__file__).with_name("compose.replicas-test.yml")


@dataclass(frozen=True)
class Scaled:
    stack: Stack
    preloader_exit: int
    preloader_log: str
    replicas: list[Any]  # the ollama containers


@pytest.fixture(scope="module")
def scaled_stack(
    compose_cli: list[str],  # noqa: F811
    docker_client: Any,
    smollm2_file: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Scaled]:
    with compose_stack(compose_cli, smollm2_file, tmp_path_factory.mktemp("replicas"), SMOLLM2) as stack:
        stack.prefix += ["-f", str(REPLICAS_OVERRIDE)]
        stack.up = stack.compose("up", "--detach", "--build")
        assert stack.up.returncode == 0, stack.describe()
        ids = stack.compose("ps", "--all", "--quiet", "model_preloader").stdout.split()
        assert len(ids) == 1, stack.describe()
        preloader = docker_client.containers.get(ids[0])
        status = preloader.wait(timeout=600)
        replicas = [docker_client.containers.get(i) for i in stack.compose("ps", "--quiet", "ollama").stdout.split()]
        stack.record(docker_client)
        yield Scaled(stack, int(status["StatusCode"]), preloader.logs().decode(errors="replace"), replicas)


def own_ps(container: Any) -> list[dict[str, Any]]:
    """The container's own /api/ps, asked from inside it through the image's `ollama ps` (no port is published)."""
    listed = container.exec_run(["ollama", "ps"], environment={"OLLAMA_HOST": "127.0.0.1:11434"})
    assert listed.exit_code == 0, listed.output.decode(errors="replace")
    lines = listed.output.decode(errors="replace").splitlines()[1:]
    return [{"name": line.split()[0]} for line in lines if line.strip()]


def test_the_preloader_finds_three_replicas_behind_the_name_and_exits_0(scaled_stack: Scaled) -> None:
    assert len(scaled_stack.replicas) == 3, scaled_stack.stack.describe()
    assert scaled_stack.preloader_exit == 0, scaled_stack.preloader_log + scaled_stack.stack.describe()
    assert "http://ollama:11434 → 3 replica(s)" in scaled_stack.preloader_log
    assert "warmed and resident on 3 of 3 replica(s) (exit 0)" in scaled_stack.preloader_log


def test_each_replicas_own_ps_shows_the_model(scaled_stack: Scaled) -> None:
    for container in scaled_stack.replicas:
        names = [model["name"] for model in own_ps(container)]
        assert SMOLLM2 in names, f"{container.name}: {json.dumps(names)}\n{scaled_stack.preloader_log}"


def test_every_replica_address_is_one_the_preloader_warmed(scaled_stack: Scaled) -> None:
    for container in scaled_stack.replicas:
        container.reload()
        (network,) = container.attrs["NetworkSettings"]["Networks"].values()
        assert f"{SMOLLM2} on http://{network['IPAddress']}:11434: resident" in scaled_stack.preloader_log
