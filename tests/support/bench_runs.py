"""Running `python -m bench` from a test: the smallest case of a section, in a scratch directory, with a clean
environment (a developer's own OLLAMA_* variables must not leak in). The tiers' smoke tests share this."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class BenchRun:
    result: subprocess.CompletedProcess[str]
    out: Path

    @property
    def results(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.out / "results.json").read_text())
        return data

    @property
    def markdown(self) -> str:
        return (self.out / "BENCHMARKS.md").read_text()


def run_bench(*args: str, out: Path, timeout: float, **env: str) -> BenchRun:
    """`python -m bench --quick ARGS --no-plot --out OUT`, which must exit 0 without a traceback."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("OLLAMA")} | env
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", *args, "--no-plot", "--out", str(out)],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]
    assert "Traceback" not in result.stderr, result.stderr[-4000:]
    return BenchRun(result, out)
