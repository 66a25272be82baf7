"""1. First-request latency on the real server: cold, right after the preloader, and in steady state.

The request is a typical first `/api/generate` of an application (SmolLM2-135M, a one-sentence question,
16 tokens, greedy so every repetition generates the same number of tokens). Conditions, in rotating order
within each repetition, each starting from an unloaded model:

* cold: nothing preloaded, so the request itself loads the model;
* preloaded: `python -m preloader` ran (default settings), then the request;
* after a load-only call: the empty-prompt load (`{"model": …}`) instead of the preloader, then the request.

Steady state: the model warm and used (it has just answered a request), then a question it has not seen.
Every measured prompt is new to the runner: the question carries a number that changes per repetition and
between the first request and the steady one. Ollama 0.32's runner (llama-server) keeps earlier prompts in a
RAM cache, so repeating a question is served from that cache even after other requests; no first request can
be in that state, and against it the gap is prompt evaluation, which no preload can do for a prompt it does
not know. That figure ("steady, prompt cached": the steady question again) is reported too.

Every measured request comes after the same idle second, as an application's first request comes some time
after the preloader finished. Back to back, 0.32's runner generates faster than after any pause (measured
here: 16 tokens in 78 ms right away, 90-245 ms after 0.3-2 s idle), so a steady state sent right after the
previous request would be a best case that no first request gets.
"""

from __future__ import annotations

import time
from typing import Any

from bench import procs
from bench.plan import Context
from bench.real import SMOLLM2, Generation, generate, unload
from bench.stats import TIMES, cell, paired_ratios, summarize
from bench.targets import Target
from preloader.warm import DEFAULT_PROMPT
from testkit.real_ollama import RealOllama

TARGET_RATIO = 1.1
QUESTION = "Question {number}: Why is the sky blue? Answer in one sentence."
# Two-digit numbers: every prompt is the same number of tokens (25 with 0.32.15's template) and each answer
# runs the full 16 tokens, checked on SmolLM2 for 10-59 (a one-digit number is a token shorter).
FIRST_NUMBER = 10
IDLE_BEFORE = 1.0  # seconds of quiet before every measured request
APP_REQUEST: dict[str, Any] = {
    "model": SMOLLM2,
    "prompt": QUESTION,
    "stream": True,
    "options": {"num_predict": 16, "temperature": 0, "seed": 1},
}


def app_request(number: int) -> dict[str, Any]:
    return {**APP_REQUEST, "prompt": QUESTION.format(number=number)}


# What the preloader sends with its default settings (preloader/warm.py, Warmer._send).
PRELOADER_WARM: dict[str, Any] = {
    "model": SMOLLM2,
    "prompt": DEFAULT_PROMPT,
    "stream": False,
    "options": {"num_predict": 1},
    "raw": True,
}
LOAD_ONLY: dict[str, Any] = {"model": SMOLLM2}
CONDITIONS = {
    "cold": "cold (no preload)",
    "preloaded": "right after the preloader",
    "after_load_only": "right after an empty-prompt load",
    "steady": "steady state",
    "steady_cached": "steady, prompt cached (the steady question again)",
}
FIRST = ("cold", "preloaded", "after_load_only")


def run(ctx: Context, server: RealOllama) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    preloader_walls: list[float] = []
    generate(server, PRELOADER_WARM)  # unmeasured: the model file in the page cache, the runner code paged in
    for rep in range(ctx.plan.reps):
        order = FIRST[rep % 3 :] + FIRST[: rep % 3]
        results: dict[str, Generation] = {}
        # A fresh runner has no prompt cached: the first requests share one question, the steady one another.
        first, steady = app_request(FIRST_NUMBER + 2 * rep), app_request(FIRST_NUMBER + 2 * rep + 1)
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
            time.sleep(IDLE_BEFORE)
            results[condition] = generate(server, first)
        generate(server, PRELOADER_WARM)  # what the preloader leaves cached, as in the first requests
        time.sleep(IDLE_BEFORE)
        results["steady"] = generate(server, steady)
        time.sleep(IDLE_BEFORE)
        results["steady_cached"] = generate(server, steady)
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
    short = [r for r in data["runs"] if r.get("eval_count") not in (None, options["num_predict"])]
    answers = (
        f"every answer ran the full {options['num_predict']} tokens"
        if not short
        else f"{len(short)} answer(s) stopped early: " + ", ".join(f"rep {r['rep']} {r['condition']}" for r in short)
    )
    lines += [
        "",
        f"The preloader itself (process wall time, SmolLM2): {cell(data['preloader_wall'])}; {answers}.",
    ]
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
            f"against the steady question asked again (prompt served from Ollama's cache) it is "
            f"{cached['median']:.2f}{TIMES}: that gap is prompt evaluation, which no preload can do for a prompt it "
            "does not know"
        )
    cold = data["summary"]["cold"]["wall_vs_steady"]
    first_token = row["first_token_vs_steady"]
    return [
        Target(
            "preloaded first request",
            f"≤ {TARGET_RATIO}{TIMES} steady state (cold: several times that)",
            f"{cell(ratio, 'x3')} (first token {cell(first_token, 'x')}; cold: {cell(cold, 'x')})",
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
        f"{cell(rows['after_load_only']['wall_vs_steady'], 'x')}. Asking the same question again is faster "
        f"still ({cell(rows['steady_cached']['wall_vs_steady'], 'x')}): Ollama reuses the cached prompt, which "
        "only a request with the same prompt can."
    )
