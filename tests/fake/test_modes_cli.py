"""The three modes as a user runs them: `ollama-preload --mode watch|check` as a process against the fake server."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from testkit.fake_ollama import FakeOllama
from tests.fake.conftest import BASH, PYTHON, settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def wait_for_status(url: str, status: int, timeout: float = 20.0) -> bytes:
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen, body = get(url)
        if seen == status:
            return body
        time.sleep(0.05)
    raise AssertionError(f"{url} never answered {status} within {timeout} s (last: {seen})")


@pytest.fixture
def watcher(fake: FakeOllama) -> Iterator[tuple[subprocess.Popen[str], str]]:
    fake.add_model("smollm2:135m", load_delay=0.5)
    port = free_port()
    process = PYTHON.popen(
        **settings(
            fake,
            "smollm2:135m",
            OLLAMA_PRELOAD_MODE="watch",
            OLLAMA_PRELOAD_WATCH_INTERVAL="1s",
            OLLAMA_PRELOAD_LISTEN=f"127.0.0.1:{port}",
            OLLAMA_PRELOAD_KEEP_ALIVE="-1",
        )
    )
    try:
        yield process, f"http://127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_watch_mode_turns_ready_once_resident_rewarms_an_eviction_and_stops_with_0_on_a_signal(
    fake: FakeOllama, watcher: tuple[subprocess.Popen[str], str], sig: signal.Signals
) -> None:
    process, base = watcher
    body = wait_for_status(f"{base}/ready", 200)
    assert json.loads(body)["ready"] is True
    assert "smollm2:135m" in fake.loaded()
    fake.evict("smollm2:135m")
    wait_for_status(f"{base}/ready", 503, timeout=5)
    wait_for_status(f"{base}/ready", 200)
    assert fake.load_count("smollm2:135m") == 2
    assert get(f"{base}/live")[0] == 200
    process.send_signal(sig)
    out, _ = process.communicate(timeout=10)
    assert process.returncode == 0, out
    assert "smollm2:135m" in out and "stopped" in out


def test_watch_mode_refuses_a_listen_address_in_use_with_exit_2_before_loading(fake: FakeOllama) -> None:
    fake.add_model("smollm2:135m")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = PYTHON.run(
            **settings(fake, "smollm2:135m", OLLAMA_PRELOAD_MODE="watch", OLLAMA_PRELOAD_LISTEN=f"127.0.0.1:{port}")
        )
    assert result.returncode == 2, result.stdout
    assert f"127.0.0.1:{port}" in result.stdout
    assert fake.load_count("smollm2:135m") == 0


@pytest.mark.parametrize(
    ("loaded", "listed", "status"),
    [(["a"], "a", 0), ([], "a", 4), (["a"], "a, b", 4)],
    ids=["resident", "not-loaded", "one-of-two-missing"],
)
def test_check_mode_exits_0_or_4_by_residency_and_sends_no_warm_request(
    fake: FakeOllama, loaded: list[str], listed: str, status: int
) -> None:
    for name in ("a", "b"):
        fake.add_model(name)
    for name in loaded:
        urllib.request.urlopen(
            urllib.request.Request(
                f"{fake.url}/api/generate", data=json.dumps({"model": name, "keep_alive": -1}).encode(), method="POST"
            ),
            timeout=10,
        ).read()
    before = len(fake.requests)
    result = PYTHON.run("--mode", "check", **settings(fake, listed))
    assert result.returncode == status, result.stdout
    assert [request.path for request in fake.requests[before:]] == ["/api/ps"]


def test_check_mode_exits_3_when_the_server_is_unreachable() -> None:
    port = free_port()
    result = PYTHON.run("--mode", "check", OLLAMA_HOST=f"127.0.0.1:{port}", OLLAMA_PRELOAD_MODELS="a", timeout=30)
    assert result.returncode == 3, result.stdout


@pytest.mark.parametrize("mode", ["watch", "check"])
def test_the_bash_fallback_refuses_other_modes_with_exit_2_and_a_hint(fake: FakeOllama, mode: str) -> None:
    fake.add_model("a")
    result = BASH.run(**settings(fake, "a", OLLAMA_PRELOAD_MODE=mode))
    assert result.returncode == 2
    assert "python" in (result.stdout + result.stderr).lower()
    assert fake.requests == []
