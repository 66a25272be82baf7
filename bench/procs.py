"""Start the tools under test as separate processes and measure them: wall time, exit status, peak RSS.

Every process is started in its own session (process group), waited for with `waitpid` in a thread of its
own (so concurrent runs get exact exit moments) and, on a timeout, killed through that group only: nothing
here touches a process it did not start.

Peak RSS comes from GNU time (`/usr/bin/time -f %M`), which reports the process's and its reaped children's
(the bash script's `curl`s) high-water mark. The kernel carries a process's peak across `exec`, so a
child forked straight from this ~50 MiB benchmark would report at least the benchmark's own size; GNU
time is a ~1 MiB parent, so its figure is the tool's.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ALTERNATIVES = Path(__file__).resolve().parent / "alternatives"
BASH_SCRIPT = REPO / "fallback" / "preload_models.sh"
GNU_TIME = Path("/usr/bin/time")


@dataclass(frozen=True)
class ProcessRun:
    argv: tuple[str, ...]
    started: float  # time.monotonic() just before the spawn
    ended: float  # time.monotonic() when waitpid returned
    returncode: int
    peak_rss_kib: int | None  # the process's and its reaped children's high-water mark; None without GNU time
    output: str  # stdout and stderr, interleaved

    @property
    def wall(self) -> float:
        return self.ended - self.started

    @property
    def peak_rss_mib(self) -> float | None:
        return None if self.peak_rss_kib is None else self.peak_rss_kib / 1024


class Launched:
    """A running process; a thread blocks in waitpid so the exit moment is exact even for concurrent runs."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], cwd: Path = REPO) -> None:
        self.argv = tuple(argv)
        # Closed in finish(): it outlives this call, so a with-block cannot own it.
        self._output = tempfile.TemporaryFile()  # noqa: SIM115
        self._result: tuple[float, int] | None = None
        self._rss_file: Path | None = None
        command = list(self.argv)
        if gnu_time_available():
            fd, name = tempfile.mkstemp(prefix="bench-rss-")
            os.close(fd)
            self._rss_file = Path(name)
            command = [str(GNU_TIME), "-f", "%M", "-o", name, *command]
        self.started = time.monotonic()
        self._proc = subprocess.Popen(
            command,
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._waiter = threading.Thread(target=self._wait, name=f"waitpid-{self._proc.pid}", daemon=True)
        self._waiter.start()

    @property
    def pid(self) -> int:
        return self._proc.pid

    def _wait(self) -> None:
        _, status = os.waitpid(self._proc.pid, 0)
        ended = time.monotonic()
        code = os.waitstatus_to_exitcode(status)
        # Popen did not reap the child itself; tell it, so it never tries to wait for a recycled pid.
        self._proc.returncode = code
        self._result = (ended, code)

    def finish(self, timeout: float) -> ProcessRun:
        self._waiter.join(max(timeout - (time.monotonic() - self.started), 0.0))
        killed = self._waiter.is_alive()
        if killed:
            # Our own process group only (start_new_session made the child its leader).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._waiter.join(10)
        if self._result is None:
            raise RuntimeError(f"{self.argv[0]} (pid {self._proc.pid}) could not be reaped")
        ended, code = self._result
        rss = self._peak_rss()
        self._output.seek(0)
        output = self._output.read().decode("utf-8", "replace")
        self._output.close()
        if killed:
            output += f"\n[bench: killed after {timeout:g} s]"
        return ProcessRun(self.argv, self.started, ended, code, rss, output)

    def _peak_rss(self) -> int | None:
        if self._rss_file is None:
            return None
        try:
            # The last line: GNU time puts "Command exited with non-zero status N" before it.
            lines = self._rss_file.read_text().split()
            return int(lines[-1]) if lines and lines[-1].isdigit() else None
        finally:
            self._rss_file.unlink(missing_ok=True)


def gnu_time_available() -> bool:
    return GNU_TIME.is_file() and os.access(GNU_TIME, os.X_OK)


def run(argv: Sequence[str], env: Mapping[str, str], timeout: float = 300.0) -> ProcessRun:
    return Launched(argv, env).finish(timeout)


def clean_env(pycache: Path | None, **settings: str) -> dict[str, str]:
    """The caller's environment without any OLLAMA_* variable, plus `settings`.

    A developer's own OLLAMA_HOST or OLLAMA_MODELS must never leak into a measured run. Python writes its
    byte-code cache to `pycache` (a directory of this run), as an installed package would have one: a
    checkout run with PYTHONDONTWRITEBYTECODE would otherwise compile every module on every start.
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith("OLLAMA")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if pycache is not None:
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    env.update(settings)
    return env


# --- the commands -----------------------------------------------------------------------------------


def package_command() -> list[str]:
    """The Python package exactly as a user runs it from a checkout."""
    return [sys.executable, "-m", "preloader"]


def bash_command() -> list[str]:
    return ["bash", str(BASH_SCRIPT)]


def minimal_python_command(url: str, models: Sequence[str], num_predict: int = 1) -> list[str]:
    return [sys.executable, str(ALTERNATIVES / "minimal_client.py"), url, str(num_predict), *models]


def minimal_requests_command(url: str, models: Sequence[str], num_predict: int = 1) -> list[str]:
    return [sys.executable, str(ALTERNATIVES / "minimal_client_requests.py"), url, str(num_predict), *models]


def minimal_curl_command(url: str, models: Sequence[str], num_predict: int = 1) -> list[str]:
    return ["bash", str(ALTERNATIVES / "minimal_client.sh"), url, str(num_predict), *models]


def poll_loop_command(url: str, model: str, interval: float, ollama_cli: Path | None) -> list[str]:
    """`while ! ollama ps; do sleep 5; done`, then one warm request; curl stands in when no CLI is here."""
    check = str(ollama_cli) if ollama_cli is not None else ""
    return ["bash", str(ALTERNATIVES / "poll_loop.sh"), url, model, f"{interval:g}", check]


def fixed_sleep_command(url: str, model: str, seconds: float) -> list[str]:
    return ["bash", str(ALTERNATIVES / "fixed_sleep.sh"), url, model, f"{seconds:g}"]
