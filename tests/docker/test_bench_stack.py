"""The benchmark's stack section at its smallest (one `up` of each stack), so it cannot rot unnoticed. No
timing is asserted: each stack comes up, every moment of the floor is measured, and the targets are judged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.docker.conftest import REPO_ROOT

pytestmark = pytest.mark.docker


def test_the_stack_section_brings_up_both_stacks_once_and_judges_them_against_their_own_floor(
    docker_client: Any, smollm2_file: Path, tmp_path: Path
) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("OLLAMA")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--only",
            "stack",
            "--reps",
            "1",
            "--no-plot",
            "--out",
            str(tmp_path),
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]

    results = json.loads((tmp_path / "results.json").read_text())
    assert results["meta"]["skipped"] == {}, results["meta"]["skipped"]
    runs = results["sections"]["stack"]["runs"]
    assert sorted(run["stack"] for run in runs) == ["keeper", "oneshot"], runs
    for run in runs:
        assert run["ready"] > 0 and run["load"] > 0 and run["floor"] < run["resident"], run
    markdown = (tmp_path / "BENCHMARKS.md").read_text()
    assert markdown.count("median ≤ floor + 1.5 s") == 2, markdown[:3000]
    assert "Traceback" not in result.stderr
