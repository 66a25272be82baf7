"""2. Warm-request cost on the real server: what loading SmolLM2-135M costs, depending on how it is asked.

Each request starts from an unloaded model, in rotating order within a repetition:

* the preloader's warm request with `num_predict` 1 (its default) and 5 (its maximum), byte for byte;
* the empty-prompt load, Ollama's documented load-only call (`{"model": …}`);
* an unbounded warm generation of the kind hand-written scripts send: the same prompt, no `num_predict`.
  It is sampled as usual (the model's default temperature); only the seed is fixed, to the repetition's
  number, so a rerun generates the same answers while the repetitions still sample different lengths.

Wall time is the client's; ratios are to the empty-prompt load of the same repetition. An unbounded warm
still running after 30 s is cut off there (hanging up stops it) and counted at 30 s, a lower bound.
"""

from __future__ import annotations

from typing import Any

from bench.plan import Context
from bench.real import SMOLLM2, generate, unload
from bench.stats import DASH, TIMES, cell, paired_ratios, summarize
from bench.targets import Target
from preloader.warm import DEFAULT_PROMPT
from testkit.real_ollama import RealOllama

TARGET_RATIO = 1.1
WELL_BELOW = 0.5  # "well below the unbounded warm": at most half of it
# Ollama 0.32 shifts the context instead of stopping, so a sampled answer can run to its 20480-token limit (287 s
# measured here). The client hangs up at this cap, which stops the generation; the wall is then a lower bound.
UNBOUNDED_TIMEOUT = 30.0
KINDS = {
    "load_only": "empty-prompt load (baseline)",
    "num_predict_1": "preloader warm, `num_predict` 1",
    "num_predict_5": "preloader warm, `num_predict` 5",
    "unbounded": "unbounded warm (prompt, no `num_predict`)",
}


def body(kind: str, rep: int) -> dict[str, Any]:
    if kind == "load_only":
        return {"model": SMOLLM2}
    if kind == "unbounded":
        return {"model": SMOLLM2, "prompt": DEFAULT_PROMPT, "stream": False, "options": {"seed": rep}}
    count = 1 if kind == "num_predict_1" else 5
    # What the preloader sends for an entry without its own prompt (pinned by the fake tier's tests).
    options = {"num_predict": count}
    return {"model": SMOLLM2, "prompt": DEFAULT_PROMPT, "stream": False, "options": options, "raw": True}


def run(ctx: Context, server: RealOllama) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    keys = tuple(KINDS)
    for rep in range(ctx.plan.reps):
        order = keys[rep % len(keys) :] + keys[: rep % len(keys)]
        for kind in order:
            unload(server, [SMOLLM2])
            try:
                record = generate(server, body(kind, rep), timeout=UNBOUNDED_TIMEOUT).to_json()
            except TimeoutError:
                # A generation that never stops: count it at the cap rather than lose the repetition.
                record = {"wall": UNBOUNDED_TIMEOUT, "capped": True, "eval_count": None, "load": None}
                record |= {"prompt_eval": None, "prompt_eval_count": None, "first_token": None}
            runs.append({"rep": rep, "kind": kind, **record})
        mine = {r["kind"]: r for r in runs if r["rep"] == rep}
        ctx.say(
            f"warm cost rep {rep + 1}/{ctx.plan.reps}: "
            + ", ".join(f"{key} {mine[key]['wall']:.2f} s" for key in keys)
            + f" ({mine['unbounded']['eval_count']} tokens unbounded)"
        )
    data: dict[str, Any] = {"prompt": DEFAULT_PROMPT, "runs": runs}
    data["summary"] = summarize_runs(data)
    return data


def summarize_runs(data: dict[str, Any]) -> dict[str, Any]:
    def series(kind: str, field: str) -> list[Any]:
        return [r[field] for r in sorted((r for r in data["runs"] if r["kind"] == kind), key=lambda r: r["rep"])]

    summary: dict[str, Any] = {}
    for kind in KINDS:
        summary[kind] = {
            "wall": summarize(series(kind, "wall")),
            "load": summarize([v for v in series(kind, "load") if v is not None]),
            "prompt_eval": summarize([v for v in series(kind, "prompt_eval") if v is not None]),
            "eval_count": summarize([v for v in series(kind, "eval_count") if v is not None]),
            "vs_load_only": summarize(paired_ratios(series(kind, "wall"), series("load_only", "wall"))),
            "vs_unbounded": summarize(paired_ratios(series(kind, "wall"), series("unbounded", "wall"))),
        }
    return summary


def _capped(data: dict[str, Any]) -> tuple[int, int]:
    """(unbounded warms cut off at the cap, unbounded warms in all)."""
    unbounded = [r for r in data["runs"] if r["kind"] == "unbounded"]
    return sum(1 for r in unbounded if r.get("capped")), len(unbounded)


def render(data: dict[str, Any]) -> list[str]:
    capped, unbounded = _capped(data)
    lines = [
        f"Prompt {data['prompt']!r}. Server load and prompt eval are Ollama's own `load_duration` and "
        "`prompt_eval_duration` (the load-only call reports neither). Unbounded warms cut off at "
        f"{UNBOUNDED_TIMEOUT:g} s (counted at that, a lower bound): {capped} of {unbounded}.",
        "",
        "| request | wall | ÷ empty-prompt load | ÷ unbounded | server load | prompt eval | tokens |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, label in KINDS.items():
        row = data["summary"][kind]
        tokens = row["eval_count"]
        count = f"{tokens['median']:.0f} ({tokens['min']:.0f}{DASH}{tokens['max']:.0f})" if tokens else "0"
        lines.append(
            f"| {label} | {cell(row['wall'])} | {cell(row['vs_load_only'], 'x')} | "
            f"{cell(row['vs_unbounded'], 'x')} | {cell(row['load'])} | {cell(row['prompt_eval'])} | {count} |"
        )
    return lines


def targets(data: dict[str, Any]) -> list[Target]:
    row = data["summary"]["num_predict_1"]
    ratio, below = row["vs_load_only"], row["vs_unbounded"]
    met = ratio["median"] <= TARGET_RATIO and below["median"] <= WELL_BELOW
    note = ""
    if ratio["median"] > TARGET_RATIO:
        load_only = data["summary"]["load_only"]["wall"]["median"]
        extra = row["wall"]["median"] - load_only
        prompt = row["prompt_eval"]["median"] if row["prompt_eval"] else 0.0
        tokens = next((r["prompt_eval_count"] for r in data["runs"] if r["kind"] == "num_predict_1"), None)
        note = (
            f"+{extra * 1000:.0f} ms over the load-only call (medians). The server reports {prompt * 1000:.0f} ms "
            f"of prompt evaluation over {tokens} prompt token(s), then one token is generated: one forward pass, "
            "the least any generation does, and what shows the model actually runs. Whether it also spares the "
            "application's first request anything: compare the two 'right after' rows of section 1"
        )
    return [
        Target(
            "warm request cost",
            f"`num_predict` 1 ≤ {TARGET_RATIO}{TIMES} the empty-prompt load, and well below the unbounded warm "
            f"(≤ {WELL_BELOW}{TIMES})",
            f"{cell(ratio, 'x3')} the load; {cell(below, 'x')} the unbounded warm",
            met,
            note,
        )
    ]


def headline(data: dict[str, Any]) -> str:
    rows = data["summary"]
    one, load = rows["num_predict_1"], rows["load_only"]
    tokens = next((r["prompt_eval_count"] for r in data["runs"] if r["kind"] == "num_predict_1"), None)
    capped, unbounded = _capped(data)
    counts = rows["unbounded"]["eval_count"]
    generated = f"{counts['median']:.0f} tokens, median of those that finished" if counts else "none finished"
    if capped:
        generated += f"; {capped} of {unbounded} still generating at {UNBOUNDED_TIMEOUT:g} s"
    return (
        f"**Warm cost.** The preloader's 1-token warm takes {cell(one['vs_load_only'], 'x')} an empty-prompt "
        f"load ({cell(one['wall'])} against {cell(load['wall'])}); it sends {data['prompt']!r} raw (no chat "
        f"template), so the server evaluates {tokens} prompt token(s), {cell(one['prompt_eval'])} on this CPU, "
        "and generates one. (Through the template the same prompt is ~10 tokens and cost as much as the load "
        "itself in an earlier run.) `num_predict` 5 costs "
        f"{cell(rows['num_predict_5']['vs_load_only'], 'x')}; "
        f"an unbounded warm {cell(rows['unbounded']['vs_load_only'], 'x')} ({generated})."
    )
