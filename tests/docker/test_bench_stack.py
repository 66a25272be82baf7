"""The benchmark's stack section at its smallest (one `up` of each stack), so it cannot rot unnoticed. No
timing is asserted: each stack comes up, every moment of the floor is measured, and the targets are judged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.bench_runs import run_bench

pytestmark = pytest.mark.docker


def test_the_stack_section_brings_up_both_stacks_once_and_judges_them_against_their_own_floor(
    docker_client: Any, smollm2_file: Path, tmp_path: Path
) -> None:
    bench = run_bench("--only", "stack", "--reps", "1", out=tmp_path, timeout=600)

    results = bench.results
    assert results["meta"]["skipped"] == {}, results["meta"]["skipped"]
    runs = results["sections"]["stack"]["runs"]
    assert sorted(run["stack"] for run in runs) == ["keeper", "oneshot"], runs
    for run in runs:
        assert run["ready"] > 0 and run["load"] > 0 and run["floor"] < run["resident"], run
    markdown = bench.markdown
    assert markdown.count("median ≤ floor + 1.5 s") == 2, markdown[:3000]
