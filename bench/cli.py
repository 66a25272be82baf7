"""`python -m bench`: run the benchmark, write BENCHMARKS.md, bench/results.json and the plot."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import (
    first_request,
    keeper,
    machine,
    overhead,
    plot,
    readiness,
    replicas,
    report,
    several,
    stack,
    warm_cost,
)
from bench.plan import FULL, QUICK, REAL_SECTIONS, SECTIONS, Context, Plan, Unavailable
from bench.procs import REPO
from bench.real import RealKit, version
from testkit.real_ollama import RealOllama

PLOT_NAME = "readiness_and_first_request.png"
SUMMARIZERS = {
    "first_request": first_request.summarize_runs,
    "warm_cost": warm_cost.summarize_runs,
    "overhead": overhead.summarize_runs,
    "readiness": readiness.summarize_runs,
    "several": several.summarize_runs,
    "keeper": keeper.summarize_runs,
    "stack": stack.summarize_runs,
    "replicas": replicas.summarize_runs,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark ollama-preloader against the alternatives, side by side in one run, and write "
        "BENCHMARKS.md, bench/results.json and a plot.",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="mode", action="store_const", const="quick", help="a few minutes (default)")
    mode.add_argument("--full", dest="mode", action="store_const", const="full", help="more repetitions and cases")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, metavar="SECTION", help=f"run only {SECTIONS}")
    parser.add_argument("--reps", type=int, help="repetitions per figure (a benchmark needs at least 5)")
    parser.add_argument("--sizes", type=int, nargs="+", help="model counts of the overhead section")
    parser.add_argument(
        "--keeper-idle", type=float, metavar="SECONDS", help="how long the idle keeper is measured (quick 60, full 600)"
    )
    parser.add_argument("--no-real", dest="real", action="store_false", default=None, help="fake server only")
    parser.add_argument("--no-plot", dest="plot", action="store_false", help="do not draw the PNG")
    parser.add_argument(
        "--out",
        type=Path,
        help="write all outputs into this directory instead of BENCHMARKS.md (repository root) and bench/",
    )
    parser.add_argument(
        "--render", type=Path, metavar="RESULTS_JSON", help="only rewrite the outputs from an earlier results.json"
    )
    return parser


def _stop_on_sigterm(signum: int, frame: object) -> None:
    # The default SIGTERM ends Python without unwinding: the servers and containers a section started would
    # outlive the run. As an exception, it goes through every `finally` that stops them.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    if args.reps is not None and args.reps < 1:
        print("--reps must be at least 1", file=sys.stderr)
        return 2
    if args.keeper_idle is not None and args.keeper_idle <= 0:
        print("--keeper-idle must be more than 0 seconds", file=sys.stderr)
        return 2
    markdown_path, json_path, plot_path = _outputs(args.out)
    if args.render is not None:
        results = json.loads(args.render.read_text())
        # Summaries are derived data: recompute them, so a change to a summary shows without a rerun.
        for key, data in results["sections"].items():
            data["summary"] = SUMMARIZERS[key](data)
    else:
        base = FULL if args.mode == "full" else QUICK
        sections = tuple(args.only) if args.only else None
        sizes = tuple(args.sizes) if args.sizes else None
        plan = base.with_overrides(
            reps=args.reps, sections=sections, real=args.real, sizes=sizes, keeper_idle=args.keeper_idle
        )
        results = run(plan)
    write(results, markdown_path, json_path, plot_path if args.plot else None)
    print(f"wrote {markdown_path}, {json_path}" + (f", {plot_path}" if args.plot and plot_path.exists() else ""))
    return 0


def _outputs(out: Path | None) -> tuple[Path, Path, Path]:
    if out is not None:
        return out / "BENCHMARKS.md", out / "results.json", out / PLOT_NAME
    here = REPO / "bench"
    return REPO / "BENCHMARKS.md", here / "results.json", here / PLOT_NAME


def run(plan: Plan) -> dict[str, Any]:
    """Run every planned section in one process, in one scratch directory removed afterwards."""
    started = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="ollama-preloader-bench-"))
    ctx = Context(plan=plan, scratch=scratch)
    results: dict[str, Any] = {
        "meta": {
            "mode": plan.mode,
            "reps": plan.reps,
            "plan": {k: v for k, v in vars(plan).items()},
            "machine": machine.describe(),
            "skipped": {},
        },
        "sections": {},
    }
    if plan.reps < 5:
        ctx.say(f"{plan.reps} repetition(s): fine for a smoke run, not for conclusions (use at least 5)")
    wants_real = plan.real and any(s in REAL_SECTIONS or s == "readiness" for s in plan.sections)
    missing = RealKit.unavailable_reason() if wants_real else "--no-real"
    shared = None
    try:
        if wants_real and missing is None:
            kit = ctx.real_kit()
            # One server for the sections that reuse a server; it keeps the 4 tiny models of section 5.
            shared = kit.server({"OLLAMA_MAX_LOADED_MODELS": str(kit.tiny_count + 1)})
            results["meta"]["ollama_version"] = version(shared)
        elif wants_real:
            ctx.say(f"real-server parts skipped: {missing}")
        for section in plan.sections:
            if section in REAL_SECTIONS and shared is None:
                results["meta"]["skipped"][section] = f"needs a real Ollama: {missing}"
                continue
            ctx.say(f"--- {section}")
            try:
                results["sections"][section] = run_section(section, ctx, shared)
            except Unavailable as exc:
                ctx.say(f"{section} skipped: {exc}")
                results["meta"]["skipped"][section] = str(exc)
            except Exception as exc:  # one broken section must not throw away the others' measurements
                traceback.print_exc()
                results["meta"]["skipped"][section] = f"failed: {type(exc).__name__}: {exc}"
    finally:
        if ctx.kit is not None:
            ctx.kit.stop_all()
        shutil.rmtree(scratch, ignore_errors=True)
    results["meta"]["duration"] = time.monotonic() - started
    results["meta"]["load_average_end"] = os.getloadavg()
    ctx.say(f"done in {results['meta']['duration']:.0f} s")
    return results


def run_section(section: str, ctx: Context, shared: RealOllama | None) -> dict[str, Any]:
    if section == "overhead":
        return overhead.run(ctx)
    if section == "readiness":
        return readiness.run(ctx)
    if section == "keeper":
        return keeper.run(ctx)  # its own server, which it restarts
    if section == "stack":
        return stack.run(ctx)  # the Docker engine's containers
    if section == "replicas":
        return replicas.run(ctx)  # fakes, and real servers of its own
    assert shared is not None  # the caller skips real-server sections without a server
    if section == "first_request":
        return first_request.run(ctx, shared)
    if section == "warm_cost":
        return warm_cost.run(ctx, shared)
    return several.run(ctx, shared)


def write(results: dict[str, Any], markdown_path: Path, json_path: Path, plot_path: Path | None) -> None:
    # The JSON first: whatever happens to the plot, the measurements are kept.
    report.write_json(results, json_path)
    drawn = None
    if plot_path is not None:
        plot_path.parent.mkdir(parents=True, exist_ok=True)
        if plot.available():
            drawn = plot_path if plot.draw(results, plot_path) else None
        else:
            print("matplotlib is not installed (pip install -e '.[bench]'): no plot", file=sys.stderr)
    report.write_markdown(results, markdown_path, drawn)
