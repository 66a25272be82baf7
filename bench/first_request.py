"""1. First-request latency on the real server: cold, right after the preloader, and in steady state.

The request is a typical first `/api/generate` of an application (SmolLM2-135M, a one-sentence question,
16 tokens, greedy so every repetition generates the same tokens). Conditions, in rotating order within
each repetition, each starting from an unloaded model:

* cold: nothing preloaded, so the request itself loads the model;
* preloaded: `python -m preloader` ran (default settings), then the request;
* after a load-only call: the empty-prompt load (`{"model": …}`) instead of the preloader, then the request.

Steady state: the model warm and used (it has just answered the request), and the server's prompt cache
in the same state as right after the preloader (its warm request is sent just before), then the same
request. Ollama reuses the longest cached prompt prefix, so repeating the identical request right away is
faster still; that figure ("steady, prompt cached") is reported too, but no first request can be in that
state.
"""

from __future__ import annotations

from typing import Any

from bench import procs
from bench.plan import Context
from bench.real import SMOLLM2, Generation, generate, unload
from bench.stats import TIMES, cell, paired_ratios, summarize
from bench.targets import Target
from preloader.warm import DEFAULT_PROMPT
from testkit.real_ollama import RealOllama

TARGET_RATIO = 1.1
APP_REQUEST: dict[str, Any] = {
    "model": SMOLLM2,
    "prompt": "Why is the sky blue? Answer in one sentence.",
    "stream": True,
    "options": {"num_predict": 16, "temperature": 0, "seed": 1},
}
# What the preloader sends with its default settings (preloader/warm.py, Warmer._send).
PRELOADER_WARM: dict[str, Any] = {
    "model": SMOLLM2,
    "prompt": DEFAULT_PROMPT,
    "stream": False,
    "options": {"num_predict": 1},
}
LOAD_ONLY: dict[str, Any] = {"model": SMOLLM2}
CONDITIONS = {
    "cold": "cold (no preload)",
    "preloaded": "right after the preloader",
    "after_load_only": "right after an empty-prompt load",
    "steady": "steady state",
    "steady_cached": "steady, prompt cached (same request again)",
}
FIRST = ("cold", "preloaded", "after_load_only")


def run(ctx: Context, server: RealOllama) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    preloader_walls: list[float] = []
    generate(server, PRELOADER_WARM)  # unmeasured: the model file in the page cache, the runner code paged in
    for rep in range(ctx.plan.reps):
        order = FIRST[rep % 3 :] + FIRST[: rep % 3]
        results: dict[str, Generation] = {}
        for condition in order:
            unload(server, [SMOLLM2])
            if condition == "preloaded":
                env = procs.clean_env(ctx.pycache, OLLAMA_HOST=server.host, OLLAMA_PRELOAD_MODELS=SMOLLM2)
                result = procs.run(procs.package_command(), env)
                if result.returncode != 0:
                    raise RuntimeError(f"the preloader failed (exit {result.returncode}):\n{result.output}")
                preloader_walls.append(result.wall)
            elif condition == "after_load_only":
                generate(server, LOAD_ONLY)
            results[condition] = generate(server, APP_REQUEST)
        generate(server, PRELOADER_WARM)  # the prompt cache as the preloader leaves it
        results["steady"] = generate(server, APP_REQUEST)
        results["steady_cached"] = generate(server, APP_REQUEST)
        runs += [{"rep": rep, "condition": key, **value.to_json()} for key, value in results.items()]
        ctx.say(
            f"first request rep {rep + 1}/{ctx.plan.reps}: "
            + ", ".join(f"{key} {value.wall:.2f} s" for key, value in results.items())
        )
    data: dict[str, Any] = {"request": APP_REQUEST, "runs": runs, "preloader_wall": summarize(preloader_walls)}
    data["summary"] = summarize_runs(data)
    return data


def summarize_runs(data: dict[str, Any]) -> dict[str, Any]:
    def series(condition: str, field: str) -> list[float]:
        records = sorted((r for r in data["runs"] if r["condition"] == condition), key=lambda r: r["rep"])
        return [r[field] for r in records]

    summary: dict[str, Any] = {}
    for condition in CONDITIONS:
        row: dict[str, Any] = {
            field: summarize([v for v in series(condition, field) if v is not None])
            for field in ("wall", "first_token", "load", "prompt_eval")
        }
        for baseline in ("steady", "steady_cached"):
            row[f"wall_vs_{baseline}"] = summarize(paired_ratios(series(condition, "wall"), series(baseline, "wall")))
            row[f"first_token_vs_{baseline}"] = summarize(
                paired_ratios(series(condition, "first_token"), series(baseline, "first_token"))
            )
        summary[condition] = row
    return summary


def render(data: dict[str, Any]) -> list[str]:
    options = data["request"]["options"]
    lines = [
        f"`{data['request']['model']}`, prompt {data['request']['prompt']!r}, options `{options}` (streamed). "
        "Unloaded means not in Ollama's memory; the GGUF file stays in the page cache. Latency = the whole "
        "request; first token = time to the first streamed piece.",
        "",
        "| condition | latency | ÷ steady | ÷ steady (cached) | first token | server load | prompt eval |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, label in CONDITIONS.items():
        row = data["summary"][key]
        lines.append(
            f"| {label} | {cell(row['wall'])} | {cell(row['wall_vs_steady'], 'x')} | "
            f"{cell(row['wall_vs_steady_cached'], 'x')} | {cell(row['first_token'])} | {cell(row['load'])} | "
            f"{cell(row['prompt_eval'])} |"
        )
    lines += ["", f"The preloader itself (process wall time, SmolLM2): {cell(data['preloader_wall'])}."]
    return lines


def targets(data: dict[str, Any]) -> list[Target]:
    row = data["summary"]["preloaded"]
    ratio = row["wall_vs_steady"]
    met = ratio["median"] <= TARGET_RATIO if ratio else None
    note = ""
    cached = row["wall_vs_steady_cached"]
    if met is False:
        extra = row["prompt_eval"]["median"] - data["summary"]["steady"]["prompt_eval"]["median"]
        note = (
            f"the server reports {extra * 1000:.0f} ms more prompt evaluation for the first request than in "
            "steady state"
        )
    elif met and cached and cached["median"] > TARGET_RATIO:
        note = (
            f"against the identical request repeated (prompt served from Ollama's cache) it is "
            f"{cached['median']:.2f}{TIMES}: that gap is prompt evaluation, which no preload can do for a prompt it "
            "does not know"
        )
    cold = data["summary"]["cold"]["wall_vs_steady"]
    return [
        Target(
            "preloaded first request",
            f"≤ {TARGET_RATIO}{TIMES} steady state (cold: several times that)",
            f"{cell(ratio, 'x3')} (cold: {cell(cold, 'x')})",
            met,
            note,
        )
    ]


def headline(data: dict[str, Any]) -> str:
    rows = data["summary"]
    load = rows["cold"]["load"]
    return (
        f"**First request.** Cold, the first request takes {cell(rows['cold']['wall_vs_steady'], 'x')} the steady "
        f"state (the server spends {cell(load)} loading SmolLM2-135M, a model that loads fast); right after the "
        f"preloader {cell(rows['preloaded']['wall_vs_steady'], 'x')}, right after an empty-prompt load "
        f"{cell(rows['after_load_only']['wall_vs_steady'], 'x')}. Repeating the identical request is faster "
        f"still ({cell(rows['steady_cached']['wall_vs_steady'], 'x')}): Ollama reuses the cached prompt, which "
        "only a request with the same prompt can."
    )
