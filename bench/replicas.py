"""8. Replicas: what warming R servers at once costs over warming one.

The preloader runs as users run it, `python -m preloader` in a process of its own, with
`OLLAMA_PRELOAD_HOSTS` listing R servers; every server holds the same cold models. Total = its wall time,
spawn to exit (0 expected, every model resident on every server, checked afterwards in each `/api/ps`).
Ratio = total with R servers ÷ total with one, paired by repetition (the R values run interleaved, in an
order rotated per repetition).

* Fake servers, R = 1, 2, 4, 8: each a `FakeOllama` of its own with the same models, every load taking
  exactly the same fixed delay; the servers work in parallel, as separate machines would, so whatever the
  ratio adds over 1.00 is the preloader's fan-out cost (threads, connections, logging, the verdict).
* Real servers, R = 1, 2, 3: `ollama serve` of the version the section names, each on a loopback port of its
  own, all sharing one models directory (SmolLM2-135M registered once); before each run every server unloads
  everything. Beside the ratio, the sum and the maximum of the load durations the servers report (from the
  preloader's JSON report), and the total minus the longest load (what the run adds around the slowest
  server): real servers on one small machine share its cores, so their loads slow each other down, which the
  fake's fixed delays do not.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from bench import procs
from bench.plan import Context
from bench.real import SMOLLM2, VERSION, RealKit
from bench.stats import DASH, DIVIDE, MINUS, TIMES, cell, paired_ratios, summarize
from bench.targets import Target
from testkit.fake_ollama import FakeOllama
from testkit.gguf_models import smollm2_gguf
from testkit.real_ollama import RealOllama, find_ollama_binary, qualify

FAKE_COUNTS = (1, 2, 4, 8)
REAL_COUNTS = (1, 2, 3)
FAKE_MODELS = ("bench-replica-a", "bench-replica-b")
FAKE_LOAD = 0.5
TARGET_RATIO = 1.1
TARGET_AT = 8


def order(counts: Sequence[int], rep: int) -> list[int]:
    """The counts rotated by the repetition, so no R always runs first (or last) on a warming machine."""
    shift = rep % len(counts)
    return [*counts[shift:], *counts[:shift]]


def preload(ctx: Context, urls: Sequence[str], models: Sequence[str], report: Path) -> dict[str, Any]:
    env = procs.clean_env(
        ctx.pycache,
        OLLAMA_PRELOAD_HOSTS=",".join(urls),
        OLLAMA_PRELOAD_MODELS=",".join(models),
        OLLAMA_PRELOAD_REPORT=str(report),
    )
    run = procs.run(procs.package_command(), env, timeout=300)
    if run.returncode != 0:
        raise RuntimeError(f"the preloader exited {run.returncode} with {len(urls)} server(s):\n{run.output[-3000:]}")
    document = json.loads(report.read_text())
    loads = [row["load_seconds"] for row in document["models"] if row.get("load_seconds") is not None]
    return {"total": run.wall, "loads": loads, "rows": len(document["models"])}


# --- fake servers ------------------------------------------------------------------------------------


@contextlib.contextmanager
def fakes(count: int) -> Iterator[list[FakeOllama]]:
    servers = []
    try:
        for _ in range(count):
            fake = FakeOllama(version=VERSION, max_loaded=len(FAKE_MODELS))
            for name in FAKE_MODELS:
                fake.add_model(name, load_delay=FAKE_LOAD)
            servers.append(fake.start())
        yield servers
    finally:
        for fake in servers:
            fake.stop()


def run_fake(ctx: Context) -> list[dict[str, Any]]:
    # One untimed run first: the first start of the package in a fresh bytecode cache is slower than the rest.
    with fakes(1) as servers:
        preload(ctx, [s.url for s in servers], FAKE_MODELS, ctx.scratch / "replicas-fake.json")
    records = []
    for rep in range(ctx.plan.reps):
        for count in order(FAKE_COUNTS, rep):
            with fakes(count) as servers:
                result = preload(ctx, [s.url for s in servers], FAKE_MODELS, ctx.scratch / "replicas-fake.json")
                missing = [s.url for s in servers if {qualify(m) for m in FAKE_MODELS} - set(s.loaded())]
            if missing or result["rows"] != count * len(FAKE_MODELS):
                raise RuntimeError(f"{count} fake server(s): not every model resident on {missing}: {result}")
            records.append({"rep": rep, "replicas": count, "total": result["total"]})
        ctx.say(
            f"replicas fake rep {rep + 1}/{ctx.plan.reps}: "
            + ", ".join(f"R={r['replicas']} {r['total']:.2f} s" for r in records if r["rep"] == rep)
        )
    return records


# --- real servers ------------------------------------------------------------------------------------


@contextlib.contextmanager
def real_servers(ctx: Context, count: int) -> Iterator[list[RealOllama] | None]:
    binary = find_ollama_binary(VERSION)
    gguf = smollm2_gguf()
    if binary is None or gguf is None:
        yield None
        return
    root = ctx.scratch / f"replicas-{VERSION}"
    kit = RealKit(binary, root, root / "models", tiny_count=0)
    try:
        registrar = kit.server()
        registrar.register_model(SMOLLM2, gguf)
        kit.stop(registrar)
        yield [kit.server({"OLLAMA_CONTEXT_LENGTH": "2048"}) for _ in range(count)]
    finally:
        kit.stop_all()


def run_real(ctx: Context) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    with real_servers(ctx, max(REAL_COUNTS)) as servers:
        if servers is None:
            return records
        for rep in range(ctx.plan.reps):
            for count in order(REAL_COUNTS, rep):
                chosen = servers[:count]
                for server in servers:
                    server.unload_all()
                result = preload(ctx, [s.base_url for s in chosen], [SMOLLM2], ctx.scratch / "replicas-real.json")
                missing = [s.base_url for s in chosen if qualify(SMOLLM2) not in s.loaded_names()]
                if missing or len(result["loads"]) != count:
                    raise RuntimeError(f"{count} real server(s): {SMOLLM2} not resident on {missing}: {result}")
                records.append({"rep": rep, "replicas": count, "total": result["total"], "loads": result["loads"]})
            ctx.say(
                f"replicas real rep {rep + 1}/{ctx.plan.reps}: "
                + ", ".join(
                    f"R={r['replicas']} {r['total']:.2f} s (loads {sum(r['loads']):.2f} s)"
                    for r in records
                    if r["rep"] == rep
                )
            )
    return records


def run(ctx: Context) -> dict[str, Any]:
    fake = run_fake(ctx)
    real = run_real(ctx) if ctx.plan.real else []
    if ctx.plan.real and not real:
        ctx.say(f"replicas: real part skipped (no ollama {VERSION} binary or no SmolLM2 GGUF)")
    data: dict[str, Any] = {"version": VERSION, "fake_load": FAKE_LOAD, "fake_models": len(FAKE_MODELS)}
    data["fake"], data["real"] = fake, real
    data["summary"] = summarize_runs(data)
    return data


# --- summary, report, targets ------------------------------------------------------------------------


def _ratios(records: list[dict[str, Any]], count: int) -> list[float]:
    """Total with `count` servers ÷ total with one, per repetition."""
    reps = sorted({r["rep"] for r in records})
    by = {(r["rep"], r["replicas"]): r["total"] for r in records}
    pairs = [(by[(rep, count)], by[(rep, 1)]) for rep in reps if (rep, count) in by and (rep, 1) in by]
    return paired_ratios([a for a, _ in pairs], [b for _, b in pairs])


def summarize_runs(data: dict[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for part in ("fake", "real"):
        records = data.get(part) or []
        rows = {}
        for count in sorted({r["replicas"] for r in records}):
            mine = [r for r in records if r["replicas"] == count]
            row = {"total": summarize([r["total"] for r in mine]), "ratio": summarize(_ratios(records, count))}
            if part == "real":
                row["load_sum"] = summarize([sum(r["loads"]) for r in mine])
                row["load_max"] = summarize([max(r["loads"]) for r in mine])
                # What the run adds around the slowest server's load: start-up, requests, the fan-out.
                row["beyond_load"] = summarize([r["total"] - max(r["loads"]) for r in mine])
            rows[str(count)] = row
        summary[part] = rows
    return summary


def render(data: dict[str, Any]) -> list[str]:
    summary = data["summary"]
    lines = [
        f"Fake servers: {data['fake_models']} models each, every load {data['fake_load']:g} s.",
        "",
        f"| servers (fake) | total | total {DIVIDE} total with one |",
        "|---:|---|---|",
    ]
    lines += [
        f"| {count} | {cell(row['total'])} | {cell(row['ratio'], 'x3')} |" for count, row in summary["fake"].items()
    ]
    lines.append("")
    if not summary["real"]:
        lines.append(f"Real servers: not measured in this run (no `ollama serve` {data['version']} or no SmolLM2).")
        return lines
    lines += [
        f"Real servers: `ollama serve` {data['version']}, `{SMOLLM2}` on each.",
        "",
        f"| servers (real) | total | total {DIVIDE} total with one | sum of the loads | longest load "
        f"| total {MINUS} longest load |",
        "|---:|---|---|---|---|---|",
    ]
    lines += [
        f"| {count} | {cell(row['total'])} | {cell(row['ratio'], 'x')} | {cell(row['load_sum'])} | "
        f"{cell(row['load_max'])} | {cell(row['beyond_load'])} |"
        for count, row in summary["real"].items()
    ]
    return lines


def targets(data: dict[str, Any]) -> list[Target]:
    row = data["summary"]["fake"].get(str(TARGET_AT))
    goal = f"total with {TARGET_AT} servers ≤ {TARGET_RATIO:g}{TIMES} the total with one"
    if row is None or row["ratio"] is None:
        return [Target("replica fan-out, fake servers", goal, DASH, None, f"R = {TARGET_AT} not run")]
    one = data["summary"]["fake"]["1"]["total"]
    return [
        Target(
            "replica fan-out, fake servers",
            goal,
            cell(row["ratio"], "x3"),
            row["ratio"]["median"] <= TARGET_RATIO,
            f"{cell(row['total'])} with {TARGET_AT} against {cell(one)} with one "
            f"({data['fake_models']} models of {data['fake_load']:g} s each)",
        )
    ]


def headline(data: dict[str, Any]) -> str:
    summary = data["summary"]
    fake = summary["fake"].get(str(TARGET_AT))
    text = "**Replicas.** "
    if fake is not None:
        text += f"Warming {TARGET_AT} fake servers at once takes {cell(fake['ratio'], 'x3')} the time of one"
    real = summary["real"]
    if real:
        most = max(real, key=int)
        row = real[most]
        text += (
            f"; {most} real servers take {cell(row['ratio'], 'x')} the time of one, their loads summing to "
            f"{cell(row['load_sum'])} (longest {cell(row['load_max'])}): the servers share this machine's cores"
        )
    return text + "."
