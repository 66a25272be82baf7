"""The benchmark's real-server sections at their smallest (one repetition, on the Ollama they measure), so they
cannot rot unnoticed. Not a benchmark: no timing is asserted, only that each section runs end to end, measures
what it says and judges its targets."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.real import VERSION
from tests.support.bench_runs import run_bench
from tests.support.real_fixtures import real_binary

pytestmark = pytest.mark.real

SECTIONS = ("first_request", "warm_cost", "several", "readiness")


def test_the_real_server_sections_run_once_on_the_current_ollama_and_judge_their_targets(tmp_path: Path) -> None:
    bench = run_bench(
        "--only", *SECTIONS, "--reps", "1", out=tmp_path, timeout=600, PRELOADER_OLLAMA_BINS=str(real_binary(VERSION))
    )

    results = bench.results
    assert results["meta"]["skipped"] == {}, results["meta"]["skipped"]
    assert results["meta"]["ollama_version"] == VERSION
    first = results["sections"]["first_request"]
    conditions = {run["condition"]: run for run in first["runs"]}
    assert set(conditions) == {"cold", "preloaded", "after_load_only", "steady", "steady_cached"}
    # Only the cold request loads the model; every answer is the same length, so the latencies compare.
    assert conditions["cold"]["load"] > 10 * conditions["preloaded"]["load"], conditions
    assert {run["eval_count"] for run in first["runs"]} == {16}, first["runs"]
    real_lags = [run for run in results["sections"]["readiness"]["runs"] if run.get("server") == "real"]
    assert real_lags, results["sections"]["readiness"]["runs"][:2]
    markdown = bench.markdown
    for target in ("| preloaded first request |", "| warm request cost |", "real server | median ≤ 0.15 s"):
        assert target in markdown, target
