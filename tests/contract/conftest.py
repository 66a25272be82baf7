"""The contract suite's server: each test runs against the fake as every supported version and against each
real version (ids `fake-0.11.4`, `ollama-0.32.15`, ...), with the same three models behind the same names.

Each server (fake or real) is started once per module and setting, and emptied before each test. A test
reads expectations keyed on `server.version`: where the fake and a real server disagree, the real one is
right and the fake is changed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from testkit.fake_ollama import FakeOllama
from testkit.real_ollama import (
    SMOLLM2,
    TINY_BERT,
    TINY_LLAMA,
    RealOllama,
    supported_versions,
)
from tests.support.real_fixtures import real_binary, real_models_dir

VERSIONS = supported_versions() or ["0.11.4"]
# Real targets carry the `real` marker, so `-m "not real"` keeps the fast fake half of the suite.
TARGETS = [pytest.param(f"fake-{v}", id=f"fake-{v}") for v in VERSIONS] + [
    pytest.param(f"ollama-{v}", id=f"ollama-{v}", marks=pytest.mark.real) for v in VERSIONS
]
_SERVER_KEY = pytest.StashKey["Server"]()
# What the real servers are started with (real_ollama.RealOllama) and the fake mirrors.
CONTEXT_LENGTH = 2048


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


@dataclass
class Server:
    """One server under contract: its address, its version, and the process or fake behind it."""

    target: str
    version: str
    base_url: str
    real: RealOllama | None = None
    fake: FakeOllama | None = None
    session: requests.Session = field(default_factory=requests.Session)

    def __post_init__(self) -> None:
        self.session.trust_env = False  # loopback only: never through a proxy from the environment

    def at_least(self, version: str) -> bool:
        return _version_tuple(self.version) >= _version_tuple(version)

    def post(self, path: str, body: Any, *, timeout: float = 60) -> requests.Response:
        return self.session.post(self.base_url + path, json=body, timeout=timeout)

    def ps(self) -> dict[str, dict[str, Any]]:
        r = self.session.get(self.base_url + "/api/ps", timeout=10)
        assert r.status_code == 200, r.text
        return {m["name"]: m for m in r.json()["models"]}

    def unload_all(self) -> None:
        for name in self.ps():
            self.post("/api/generate", {"model": name, "keep_alive": 0})
        deadline = time.monotonic() + 30
        while self.ps():
            assert time.monotonic() < deadline, f"still loaded: {list(self.ps())}"
            time.sleep(0.05)

    def log_text(self) -> str:
        return self.real.log_text() if self.real is not None else ""


def _fake(version: str, env: Mapping[str, str]) -> FakeOllama:
    fake = FakeOllama(
        version=version, max_loaded=int(env.get("OLLAMA_MAX_LOADED_MODELS", 3)), default_num_ctx=CONTEXT_LENGTH
    )
    # Load delays of the order seen on the real servers (FINDINGS.md), so timing-shaped tests hold on both.
    fake.add_model(SMOLLM2, load_delay=0.4, context_length=8192, from_gguf=True)
    fake.add_model(TINY_LLAMA, load_delay=0.05, context_length=2048, from_gguf=True)
    fake.add_model(TINY_BERT, embedding=True, load_delay=0.05, context_length=512, from_gguf=True)
    return fake.start()


@pytest.fixture(scope="module", params=TARGETS)
def make_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., Server]]:
    """`make(env)`: the module's server of this target with these settings, started on first use."""
    kind, version = str(request.param).split("-", 1)  # "fake-0.11.4" / "ollama-0.32.15"
    made: dict[tuple[tuple[str, str], ...], Server] = {}

    def make(env: Mapping[str, str] | None = None) -> Server:
        key = tuple(sorted((env or {}).items()))
        if key not in made:
            if kind == "fake":
                fake = _fake(version, env or {})
                made[key] = Server(request.param, version, fake.url, fake=fake)
            else:
                binary = real_binary(version)
                models_dir = real_models_dir(binary, tmp_path_factory)
                state = tmp_path_factory.mktemp(f"contract-{version}")
                real = RealOllama(binary, state, env=env, models_dir=models_dir, context_length=CONTEXT_LENGTH)
                made[key] = Server(request.param, version, real.base_url, real=real)
                real.start()
        server = made[key]
        if server.real is not None and not server.real.running():
            server.real.start()  # an earlier test may have crashed it
        server.unload_all()
        return server

    yield make
    for server in made.values():
        server.session.close()
        if server.real is not None:
            server.real.stop()
        if server.fake is not None:
            server.fake.stop()


@pytest.fixture
def server(make_server: Callable[..., Server], request: pytest.FixtureRequest) -> Server:
    """The default server (3 model slots, 5m keep-alive, context 2048), with nothing loaded."""
    request.node.stash[_SERVER_KEY] = made = make_server()
    return made


@pytest.fixture
def single_slot(make_server: Callable[..., Server], request: pytest.FixtureRequest) -> Server:
    """A server started with OLLAMA_MAX_LOADED_MODELS=1, with nothing loaded."""
    request.node.stash[_SERVER_KEY] = made = make_server({"OLLAMA_MAX_LOADED_MODELS": "1"})
    return made


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the tail of the real server's log to a contract test that failed in its body."""
    report = yield
    server = item.stash.get(_SERVER_KEY, None)
    if report.failed and report.when == "call" and server is not None and server.real is not None:
        report.sections.append((f"ollama log {server.real.log_path}", server.real.log_tail(60)))
    return report
