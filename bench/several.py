"""5. Several models on the real server: total time against the server's own load times, and concurrency.

N distinct tiny synthetic llamas (N = 1, 2, 4), all unloaded first, warmed by `python -m preloader` with
`OLLAMA_PRELOAD_CONCURRENCY` 1, 2 or 4; the server keeps up to 4 models. The total is the process's wall
time (start-up, wait, warm, verify); the loads are each model's `load_duration` from the run's JSON report,
whose sum is what loading one model after the other costs at least. With concurrency > 1 the total can
fall below that sum only if the server loads several models at once. Concurrency is compared by total
time, paired with concurrency 1 at the same N.
"""

from __future__ import annotations

import json
from typing import Any

from bench import procs
from bench.plan import Context
from bench.real import tiny_name, unload
from bench.stats import MINUS, TIMES, cell, paired_ratios, summarize
from bench.targets import Target
from testkit.real_ollama import RealOllama


def run(ctx: Context, server: RealOllama) -> dict[str, Any]:
    cases = list(ctx.plan.several_cases)
    runs: list[dict[str, Any]] = []
    everything = [tiny_name(i) for i in range(max(n for n, _ in cases))]
    report = ctx.scratch / "several-report.json"
    for rep in range(ctx.plan.reps):
        order = cases[rep % len(cases) :] + cases[: rep % len(cases)]
        for count, concurrency in order:
            models = everything[:count]
            unload(server, everything)
            env = procs.clean_env(
                ctx.pycache,
                OLLAMA_HOST=server.host,
                OLLAMA_PRELOAD_MODELS=",".join(models),
                OLLAMA_PRELOAD_CONCURRENCY=str(concurrency),
                OLLAMA_PRELOAD_REPORT=str(report),
            )
            result = procs.run(procs.package_command(), env)
            if result.returncode != 0:
                raise RuntimeError(f"the preloader failed (exit {result.returncode}):\n{result.output}")
            rows = json.loads(report.read_text())["models"]
            loads = [row["load_seconds"] or 0.0 for row in rows]
            runs.append(
                {
                    "rep": rep,
                    "models": count,
                    "concurrency": concurrency,
                    "wall": result.wall,
                    "loads": loads,
                    "sum_loads": sum(loads),
                    "warm_seconds": [row["seconds"] for row in rows],
                }
            )
        mine = [r for r in runs if r["rep"] == rep]
        ctx.say(
            f"several models rep {rep + 1}/{ctx.plan.reps}: "
            + ", ".join(f"N={r['models']} c={r['concurrency']} {r['wall']:.2f} s" for r in mine)
        )
    report.unlink(missing_ok=True)
    data: dict[str, Any] = {"cases": [list(case) for case in cases], "runs": runs}
    data["summary"] = summarize_runs(data)
    return data


def summarize_runs(data: dict[str, Any]) -> dict[str, Any]:
    def series(count: int, concurrency: int, field: str) -> list[float]:
        records = [r for r in data["runs"] if r["models"] == count and r["concurrency"] == concurrency]
        return [r[field] for r in sorted(records, key=lambda r: r["rep"])]

    summary: dict[str, Any] = {}
    for count, concurrency in data["cases"]:
        walls, sums = series(count, concurrency, "wall"), series(count, concurrency, "sum_loads")
        sequential = [c for n, c in data["cases"] if n == count and c == 1]
        summary[f"{count}x{concurrency}"] = {
            "models": count,
            "concurrency": concurrency,
            "wall": summarize(walls),
            "sum_loads": summarize(sums),
            "wall_vs_sum_loads": summarize(paired_ratios(walls, sums)),
            "overhead": summarize([w - s for w, s in zip(walls, sums, strict=True)]),
            "vs_concurrency_1": summarize(paired_ratios(walls, series(count, 1, "wall"))) if sequential else None,
        }
    return summary


def render(data: dict[str, Any]) -> list[str]:
    lines = [
        f"| models | concurrency | total (process) | sum of server loads | total ÷ loads | total {MINUS} loads | "
        "÷ concurrency 1 |",
        "|---:|---:|---|---|---|---|---|",
    ]
    for row in data["summary"].values():
        ratio = "baseline" if row["concurrency"] == 1 else cell(row["vs_concurrency_1"], "x")
        lines.append(
            f"| {row['models']} | {row['concurrency']} | {cell(row['wall'])} | {cell(row['sum_loads'])} | "
            f"{cell(row['wall_vs_sum_loads'], 'x')} | {cell(row['overhead'])} | {ratio} |"
        )
    lines += ["", verdict(data)]
    return lines


def verdict(data: dict[str, Any]) -> str:
    """Does warming in parallel pay? The default (1) should follow the answer."""
    parallel = [row for row in data["summary"].values() if row["concurrency"] > 1 and row["vs_concurrency_1"]]
    if not parallel:
        return "Concurrency was not compared in this run."
    best = min(parallel, key=lambda row: row["vs_concurrency_1"]["median"])
    ratio = best["vs_concurrency_1"]["median"]
    if ratio < 0.9:
        return (
            f"Parallel warm requests gain with these tiny models: N={best['models']} at concurrency "
            f"{best['concurrency']} takes {ratio:.2f}{TIMES} the sequential time, while each model's server-reported "
            "load stays the same, so this Ollama overlaps the loads of different models rather than loading one "
            "at a time. A tiny model's load is mostly the fixed start of its runner process; whether large models, "
            "whose loads compete for disk and memory bandwidth (and for VRAM on a GPU), gain as much is not "
            "measured here. The default (1) deserves a second look."
        )
    return (
        f"Parallel warm requests gain little or nothing (best: {ratio:.2f}{TIMES} the sequential time, N="
        f"{best['models']}, concurrency {best['concurrency']}): Ollama loads one model at a time, so the "
        "default stays 1 (sequential, in the listed order, and one failure at a time in the log)."
    )


def targets(_data: dict[str, Any]) -> list[Target]:
    return []  # the issue sets no target here; the verdict on the default is in the section itself


def headline(data: dict[str, Any]) -> str:
    rows = [row for row in data["summary"].values() if row["concurrency"] == 1]
    widest = max(rows, key=lambda row: row["models"]) if rows else None
    fixed = (
        f"At concurrency 1 the total exceeds the sum of the server's loads by a near-constant "
        f"{cell(widest['overhead'])} at N={widest['models']} (start-up, wait, verify). "
        if widest
        else ""
    )
    return f"**Several models.** {fixed}{verdict(data)}"
