"""The preloader against a real Ollama (every supported version, built from source) with real models, end to end.

Each behaviour is checked through both implementations the project ships: the Python CLI
(`python -m preloader`) and the bash fallback (`fallback/preload_models.sh`), driven only by environment
variables, as a compose file would drive them. Assertions use the server's own view (`/api/ps`, its
request log, `load_duration`), never the preloader's word alone.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from testkit.real_ollama import (
    SMOLLM2,
    TINY_BERT,
    TINY_LLAMA,
    OllamaFactory,
    RealOllama,
    free_port,
    qualify,
)

pytestmark = pytest.mark.real

REPO = Path(__file__).resolve().parents[2]
BASH_SCRIPT = REPO / "fallback" / "preload_models.sh"
RUN_TIMEOUT = 120.0
FOREVER_YEAR = 2200  # keep_alive -1 → expires_at ≈ now + 292 years (observed: year 2319)

# Deterministic, one-token requests: assertions are about loading, never about the text.
PROBE_OPTIONS: dict[str, Any] = {"temperature": 0, "seed": 1, "num_predict": 1}

_GIN_LINE = re.compile(r'\[GIN\][^|]*\|\s*(\d{3})\s*\|[^|]*\|[^|]*\|\s*(\w+)\s+"([^"]+)"')


@dataclass(frozen=True)
class Run:
    returncode: int
    output: str  # stdout and stderr together: which stream a message goes to is not under test
    seconds: float


@dataclass(frozen=True)
class Preloader:
    """One implementation of the preloader, run as a subprocess configured by environment only."""

    kind: str  # "python" | "bash"
    workdir: Path

    def command(self) -> list[str]:
        if self.kind == "python":
            return [sys.executable, "-m", "preloader"]
        return ["bash", str(BASH_SCRIPT)]

    def environment(self, host: str, settings: Mapping[str, str]) -> dict[str, str]:
        # Nothing from the developer's own Ollama setup may leak in, and loopback must never go through a
        # proxy; PYTHONPATH makes the package importable from the scratch working directory.
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("OLLAMA_") and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")
        }
        env.update(PYTHONPATH=str(REPO), NO_PROXY="127.0.0.1,localhost", OLLAMA_HOST=host)
        env.update(settings)
        return env

    def start(self, host: str, **settings: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(),
            env=self.environment(host, settings),
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def run(self, host: str, *, timeout: float = RUN_TIMEOUT, **settings: str) -> Run:
        t0 = time.monotonic()
        proc = self.start(host, **settings)
        try:
            output, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()  # our own child, by pid
            output, _ = proc.communicate()
            pytest.fail(f"{self.kind} preloader still running after {timeout}s:\n{output}")
        return Run(proc.returncode, output, time.monotonic() - t0)


@pytest.fixture(params=["python", "bash"])
def preloader(request: pytest.FixtureRequest, tmp_path: Path) -> Preloader:
    if request.param == "bash" and not BASH_SCRIPT.is_file():
        # A missing fallback is a defect of the project, not of this machine: fail, never skip.
        pytest.fail(f"{BASH_SCRIPT.relative_to(REPO)} does not exist", pytrace=False)
    return Preloader(request.param, tmp_path)


@pytest.fixture
def python_preloader(tmp_path: Path) -> Preloader:
    """The Python CLI alone, for what the bash fallback refuses by design (reports, pulling)."""
    return Preloader("python", tmp_path)


# --- helpers ---------------------------------------------------------------------------------------------


def generate_load_seconds(server: RealOllama, model: str, **options: Any) -> float:
    """Send one real one-token generation and return the server's `load_duration` in seconds."""
    # "a", not "Hi": on 0.32.15 tiny-llama answers "Hi" with a token that is not valid UTF-8, and the server
    # then replies 200 with an empty, unfinished object (test_server_facts.py shows it).
    r = server.post(
        "/api/generate",
        {"model": model, "prompt": "a", "stream": False, "options": {**PROBE_OPTIONS, **options}},
    )
    assert r.status == 200 and "load_duration" in r.json(), r.text
    return float(r.json()["load_duration"]) / 1e9


def running(server: RealOllama) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in server.ps()}


def requests_logged(log: str) -> list[tuple[int, str, str]]:
    """(status, method, path) of every request in a slice of the server's log (gin's access lines)."""
    return [(int(s), m, p) for s, m, p in _GIN_LINE.findall(log)]


def lines_about(output: str, model: str) -> list[str]:
    return [line for line in output.splitlines() if model in line]


# --- tests -----------------------------------------------------------------------------------------------


def test_keep_alive_forever_leaves_smollm2_resident_and_the_next_request_does_not_load_it(
    ollama: RealOllama, preloader: Preloader, tmp_path: Path
) -> None:
    # The cold cost, measured on this machine now: a first request against an unloaded model.
    cold = generate_load_seconds(ollama, SMOLLM2)
    ollama.unload(SMOLLM2)

    report = tmp_path / "report.json"
    # The bash fallback writes no report (it refuses the setting): the report is checked on Python only.
    extra: dict[str, Any] = {"OLLAMA_PRELOAD_REPORT": str(report)} if preloader.kind == "python" else {}
    run = preloader.run(ollama.host, OLLAMA_PRELOAD_MODELS=SMOLLM2, OLLAMA_PRELOAD_KEEP_ALIVE="-1", **extra)

    assert run.returncode == 0, run.output
    loaded = running(ollama)
    assert SMOLLM2 in loaded, loaded
    assert int(loaded[SMOLLM2]["expires_at"][:4]) >= FOREVER_YEAR, loaded[SMOLLM2]["expires_at"]
    warm = generate_load_seconds(ollama, SMOLLM2)
    # Observed cold ≈ 0.35 s (0.11.4) / ≈ 1.1 s (0.32.15); warm ≈ 0.02 s / ≈ 0.001 s: no load.
    assert warm < cold / 3, f"first request after preload still paid a load: {warm:.3f}s vs cold {cold:.3f}s"
    if extra:
        assert json.loads(report.read_text())["exit_status"] == 0


def test_embedding_only_model_is_warmed_through_embed_and_stays_resident(
    ollama: RealOllama, preloader: Preloader
) -> None:
    log_mark = len(ollama.log_text())

    run = preloader.run(ollama.host, OLLAMA_PRELOAD_MODELS=TINY_BERT, OLLAMA_PRELOAD_KEEP_ALIVE="-1")

    assert run.returncode == 0, run.output
    assert qualify(TINY_BERT) in ollama.loaded_names()
    during_run = requests_logged(ollama.log_text()[log_mark:])
    assert (200, "POST", "/api/embed") in during_run, during_run
    # /api/generate on an embedding model is a 400 ("does not support generate"): never even try it.
    assert not [r for r in during_run if r[2] == "/api/generate"], during_run


def test_second_model_evicts_the_first_on_a_one_slot_server_and_the_run_exits_4_saying_why(
    single_slot_ollama: RealOllama, preloader: Preloader
) -> None:
    run = preloader.run(
        single_slot_ollama.host,
        OLLAMA_PRELOAD_MODELS=f"{TINY_LLAMA},{TINY_BERT}",
        OLLAMA_PRELOAD_KEEP_ALIVE="-1",
    )

    assert run.returncode == 4, run.output
    # The server's truth: keep_alive -1 did not protect the first model from eviction.
    assert single_slot_ollama.loaded_names() == {qualify(TINY_BERT)}
    about_first = "\n".join(lines_about(run.output, TINY_LLAMA))
    assert re.search(r"evict|OLLAMA_MAX_LOADED_MODELS", about_first, re.IGNORECASE), run.output


def test_missing_model_exits_4_with_an_ollama_pull_hint(ollama: RealOllama, preloader: Preloader) -> None:
    run = preloader.run(ollama.host, OLLAMA_PRELOAD_MODELS="no-such-model:1b")

    assert run.returncode == 4, run.output
    assert "ollama pull no-such-model:1b" in run.output


def test_pull_missing_of_an_unpullable_name_fails_cleanly_with_the_servers_error(
    ollama: RealOllama, python_preloader: Preloader
) -> None:
    preloader = python_preloader
    # The server's registry traffic goes to a dead loopback proxy (see real_ollama.no_egress_env): the pull
    # fails at once with the server's own text, as on a host without internet access.
    run = preloader.run(ollama.host, OLLAMA_PRELOAD_MODELS="no-such-model:1b", OLLAMA_PRELOAD_PULL="missing")

    assert run.returncode == 4, run.output
    assert "pull model manifest" in run.output, run.output
    assert "Traceback" not in run.output
    assert run.seconds < 30


def test_waits_for_a_server_that_starts_after_it_and_then_warms(
    ollama_factory: OllamaFactory, preloader: Preloader
) -> None:
    server = ollama_factory(start=False)  # the address is known; nothing listens yet
    proc = preloader.start(server.host, OLLAMA_PRELOAD_MODELS=TINY_LLAMA, OLLAMA_PRELOAD_WAIT_TIMEOUT="60s")
    try:
        time.sleep(1.5)
        assert proc.poll() is None, f"gave up before the server existed:\n{proc.communicate()[0]}"
        server.start()
        output, _ = proc.communicate(timeout=RUN_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    assert proc.returncode == 0, output
    assert qualify(TINY_LLAMA) in server.loaded_names()


def test_server_that_never_starts_exits_3_at_the_wait_deadline(preloader: Preloader) -> None:
    deadline = 3.0
    run = preloader.run(
        f"127.0.0.1:{free_port()}",  # nothing listens there
        OLLAMA_PRELOAD_MODELS=TINY_LLAMA,
        OLLAMA_PRELOAD_WAIT_TIMEOUT=f"{deadline:g}s",
    )

    assert run.returncode == 3, run.output
    # Interpreter start-up and the last poll take a moment; the wait itself must honour the deadline.
    assert deadline <= run.seconds < deadline + 10, run.seconds


def test_per_entry_num_ctx_reaches_the_server_and_a_later_request_with_it_does_not_reload(
    ollama: RealOllama, preloader: Preloader
) -> None:
    run = preloader.run(ollama.host, OLLAMA_PRELOAD_MODELS=f"{TINY_LLAMA}?num_ctx=1024", OLLAMA_PRELOAD_KEEP_ALIVE="-1")

    assert run.returncode == 0, run.output
    assert running(ollama)[qualify(TINY_LLAMA)]["context_length"] == 1024
    same = generate_load_seconds(ollama, TINY_LLAMA, num_ctx=1024)
    assert running(ollama)[qualify(TINY_LLAMA)]["context_length"] == 1024
    # Control: other runner options do force a reload (context back to the server default), which is
    # what warming with the traffic's exact options avoids. Observed: ≈ 0.001 s vs ≈ 0.26 s.
    other = generate_load_seconds(ollama, TINY_LLAMA)
    assert running(ollama)[qualify(TINY_LLAMA)]["context_length"] == 2048
    assert same < other / 3, f"same options took {same:.3f}s, a real reload {other:.3f}s"
