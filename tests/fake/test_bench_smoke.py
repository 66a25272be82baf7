"""The benchmark's smallest case, so `python -m bench` cannot rot unnoticed. Not a benchmark: no timings
are asserted, only that it runs end to end and writes well-formed outputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.fake.conftest import REPO, clean_env


def test_quick_mode_smallest_case_runs_and_writes_its_outputs(tmp_path: Path) -> None:
    # One model, one repetition, fake server only: the overhead section's smallest case (a few seconds).
    command = [sys.executable, "-m", "bench", "--quick", "--only", "overhead", "--sizes", "1", "--reps", "1"]
    result = subprocess.run(
        [*command, "--no-real", "--no-plot", "--out", str(tmp_path)],
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr

    results = json.loads((tmp_path / "results.json").read_text())
    overhead = results["sections"]["overhead"]
    assert {run["client"] for run in overhead["runs"]} == {
        "package",
        "bash",
        "minimal-python",
        "minimal-requests",
        "minimal-curl",
    }
    assert all(run["exit"] == 0 and run["requests"] == 4 for run in overhead["runs"]), overhead["runs"]
    # The baselines are only fair if every client sent exactly the preloader's requests.
    assert all(overhead["same_requests"].values()), overhead["same_requests"]
    markdown = (tmp_path / "BENCHMARKS.md").read_text()
    assert "## 3. Own overhead (fake server)" in markdown and "| 1 | preloader (Python package) |" in markdown

    # The report can be rebuilt from the JSON alone.
    (tmp_path / "BENCHMARKS.md").unlink()
    saved = str(tmp_path / "results.json")
    rerender = subprocess.run(
        [sys.executable, "-m", "bench", "--render", saved, "--no-plot", "--out", str(tmp_path)],
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert rerender.returncode == 0, rerender.stdout + rerender.stderr
    assert (tmp_path / "BENCHMARKS.md").read_text() == markdown


def test_keeper_section_smallest_case_measures_rewarm_check_and_idle_on_the_fake(tmp_path: Path) -> None:
    # One repetition, a 2 s idle span, fake server: the keeper section end to end in about ten seconds.
    command = [sys.executable, "-m", "bench", "--quick", "--only", "keeper", "--reps", "1", "--keeper-idle", "2"]
    result = subprocess.run(
        [*command, "--no-real", "--no-plot", "--out", str(tmp_path)],
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr

    results = json.loads((tmp_path / "results.json").read_text())
    assert "keeper" not in results["meta"]["skipped"], results["meta"]["skipped"]
    keeper = results["sections"]["keeper"]
    assert keeper["server"] == "fake"
    [rewarm] = keeper["rewarm"]
    # The keeper itself brought the model back, and said why; a SIGTERM ended it with 0.
    assert rewarm["case"] == "unload" and rewarm["reason"] == "unloaded", rewarm
    assert rewarm["keeper_exit"] == 0 and keeper["idle"]["keeper_exit"] == 0
    assert keeper["idle"]["ready_at_end"] and keeper["idle"]["rss_max_mib"] > 0
    assert len(keeper["check"]) == 2 and all(call["main"] < call["check"] for call in keeper["check"])
    markdown = (tmp_path / "BENCHMARKS.md").read_text()
    assert "## 6. Keeping models warm: watch and check modes" in markdown
    assert "| idle keeper RSS, fake server |" in markdown
