"""3. Own overhead: the preloader against a minimal client sending the same requests, on the fake server.

The fake's loads take exactly `load_delay` each, so whatever a tool adds on top of N times load_delay is its
own cost: interpreter start-up, imports, checks, logging. Each tool is compared with the baseline written
in the same language (the package with a minimal Python client on one keep-alive connection, the bash
script with one `curl` per request), paired by repetition, and with the Python baseline as the absolute
floor. Start-up is the time from the spawn to the first request the fake records.

The load delay, 0.25 s, is the shortest real load measured here (a tiny llama: Ollama starting its runner
process), so the loads hide as little of a tool's own cost as any real model would.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bench import procs
from bench.fake import fake_server, model_names, signature
from bench.plan import Context
from bench.stats import TIMES, cell, paired_ratios, summarize
from bench.targets import Target

TARGET_RATIO = 1.03
TARGET_SIZE = 16


@dataclass(frozen=True)
class Client:
    key: str
    label: str
    baseline: str | None  # key of the like-for-like baseline; None for a baseline itself
    command: Callable[[str, Sequence[str]], list[str]]


CLIENTS = (
    Client("package", "preloader (Python package)", "minimal-python", lambda _url, _models: procs.package_command()),
    Client("bash", "preloader (bash script)", "minimal-curl", lambda _url, _models: procs.bash_command()),
    Client("minimal-python", "minimal client, Python http.client", None, procs.minimal_python_command),
    # Not a target baseline: it splits the package's overhead into its required libraries and its own code.
    Client("minimal-requests", "minimal client, requests + tenacity", None, procs.minimal_requests_command),
    Client("minimal-curl", "minimal client, bash + curl", None, procs.minimal_curl_command),
)
BY_KEY = {client.key: client for client in CLIENTS}


def measure(ctx: Context, client: Client, count: int, load_delay: float) -> dict[str, Any]:
    """One run of one client against a fresh fake holding `count` cold models."""
    models = model_names(count)
    fake = fake_server(models, load_delay=load_delay)
    try:
        env = procs.clean_env(ctx.pycache, OLLAMA_HOST=fake.url, OLLAMA_PRELOAD_MODELS=",".join(models))
        run = procs.run(client.command(fake.url, models), env, timeout=60 + 3 * count * load_delay)
        requests = fake.requests
    finally:
        fake.stop()
    if run.returncode != 0:
        ctx.say(f"  {client.key} exited {run.returncode}: {run.output[-500:]}")
    return {
        "client": client.key,
        "models": count,
        "wall": run.wall,
        "startup": requests[0].at - run.started if requests else None,
        "last_request": requests[-1].at - run.started if requests else None,
        "peak_rss_mib": run.peak_rss_mib,
        "exit": run.returncode,
        "requests": len(requests),
        "signature": signature(requests),
    }


def run(ctx: Context) -> dict[str, Any]:
    plan = ctx.plan
    runs: list[dict[str, Any]] = []
    ctx.say("overhead: one unmeasured run of each client (fills the byte-code and file caches)")
    for client in CLIENTS:
        measure(ctx, client, 1, 0.0)
    same: dict[str, bool] = {}
    for count in plan.overhead_sizes:
        for rep in range(plan.reps):
            # Rotate the order every repetition, so a slow spell of the machine does not always hit one client.
            order = CLIENTS[rep % len(CLIENTS) :] + CLIENTS[: rep % len(CLIENTS)]
            measured = {client.key: measure(ctx, client, count, plan.load_delay) for client in order}
            reference = measured["minimal-python"]["signature"]
            for client in CLIENTS:
                record = measured[client.key]
                same[client.key] = same.get(client.key, True) and record.pop("signature") == reference
                runs.append({"rep": rep, **record})
            ctx.say(
                f"overhead N={count} rep {rep + 1}/{plan.reps}: "
                + ", ".join(f"{key} {measured[key]['wall']:.2f} s" for key in BY_KEY)
            )
    data = {"load_delay": plan.load_delay, "sizes": list(plan.overhead_sizes), "runs": runs, "same_requests": same}
    data["summary"] = summarize_runs(data)
    return data


def summarize_runs(data: dict[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for count in data["sizes"]:
        by_client = {
            key: sorted(
                (r for r in data["runs"] if r["client"] == key and r["models"] == count), key=lambda r: r["rep"]
            )
            for key in BY_KEY
        }
        rows: dict[str, Any] = {}
        for key, client in BY_KEY.items():
            records = by_client[key]
            ok = all(r["exit"] == 0 for r in records)
            timed = [r for r in records if r["startup"] is not None]
            row: dict[str, Any] = {
                "wall": summarize([r["wall"] for r in records]),
                "startup": summarize([r["startup"] for r in timed]),
                # Between the first and the last request: the per-model work; after the last: report and exit.
                "requests_span": summarize([r["last_request"] - r["startup"] for r in timed]),
                "after_last": summarize([r["wall"] - r["last_request"] for r in timed]),
                "peak_rss_mib": summarize([r["peak_rss_mib"] for r in records if r["peak_rss_mib"] is not None]),
                "all_exit_0": ok,
            }
            for baseline in ("minimal-python", "minimal-requests", "minimal-curl"):
                if baseline != key:
                    walls = [r["wall"] for r in records]
                    row[f"vs_{baseline}"] = summarize(paired_ratios(walls, [r["wall"] for r in by_client[baseline]]))
            row["baseline"] = client.baseline
            rows[key] = row
        summary[str(count)] = rows
    return summary


def render(data: dict[str, Any]) -> list[str]:
    lines = [
        f"Every model loads in exactly {data['load_delay']:g} s; a fresh fake (all models cold) for every run, "
        "clients in rotating order. Wall time is spawn → exit; peak RSS includes reaped children (the bash "
        "script's `curl`s).",
        "",
        "| models | client | wall | ratio to its baseline | ratio to minimal Python | start-up | peak RSS |",
        "|---:|---|---|---|---|---|---|",
    ]
    for count in data["sizes"]:
        for key, client in BY_KEY.items():
            row = data["summary"][str(count)][key]
            own = cell(row.get(f"vs_{client.baseline}"), "x") if client.baseline else "baseline"
            floor = cell(row.get("vs_minimal-python"), "x") if key != "minimal-python" else "baseline"
            failed = "" if row["all_exit_0"] else " (a run failed)"
            lines.append(
                f"| {count} | {client.label}{failed} | {cell(row['wall'])} | {own} | {floor} | "
                f"{cell(row['startup'])} | {cell(row['peak_rss_mib'], 'MiB')} |"
            )
    differs = [BY_KEY[key].label for key, same in data["same_requests"].items() if not same]
    lines += [
        "",
        "Every client sent exactly the same requests (method, path, JSON body) as the minimal Python client."
        if not differs
        else f"Requests that differ from the minimal Python client's: {', '.join(differs)}.",
    ]
    return lines


def breakdown(rows: dict[str, Any], key: str, count: int) -> str:
    """Where a tool's extra wall time goes, phase by phase, against its baseline (medians, milliseconds)."""
    tool, base = rows[key], rows[BY_KEY[key].baseline or ""]

    def extra(field: str) -> float:
        return 1000 * (tool[field]["median"] - base[field]["median"])

    return (
        f"+{extra('wall'):.0f} ms over the baseline at N={count}: start-up (spawn → first request) "
        f"+{extra('startup'):.0f} ms, first → last request +{extra('requests_span'):.0f} ms "
        f"({extra('requests_span') / count:.1f} ms per model), last request → exit +{extra('after_last'):.0f} ms"
    )


def targets(data: dict[str, Any]) -> list[Target]:
    size = str(TARGET_SIZE) if str(TARGET_SIZE) in data["summary"] else str(max(data["sizes"]))
    found = []
    for key, label in (("package", "Python package"), ("bash", "bash script")):
        row = data["summary"][size][key]
        ratio = row.get(f"vs_{BY_KEY[key].baseline}")
        met = ratio["median"] <= TARGET_RATIO if ratio else None
        note = ""
        if met is False:
            note = breakdown(data["summary"][size], key, int(size))
            if key == "package":
                libraries = data["summary"][size]["minimal-requests"].get("vs_minimal-python")
                own = row.get("vs_minimal-requests")
                note += (
                    f". The minimal client on the package's two required libraries (requests, tenacity) alone is "
                    f"{cell(libraries, 'x3')} the minimal client: their import and per-request cost is most of it; "
                    f"the package's own code is {cell(own, 'x3')} that client"
                )
        found.append(
            Target(
                f"own overhead, {label}",
                f"≤ {TARGET_RATIO}{TIMES} the minimal client at N = {TARGET_SIZE} (fake server)",
                f"{cell(ratio, 'x3')} at N = {size}",
                met,
                note,
            )
        )
    return found


def headline(data: dict[str, Any]) -> str:
    size = str(TARGET_SIZE) if str(TARGET_SIZE) in data["summary"] else str(max(data["sizes"]))
    rows = data["summary"][size]
    return (
        f"**Own overhead.** With {size} models loading in {data['load_delay']:g} s each, the package takes "
        f"{cell(rows['package']['vs_minimal-python'], 'x')} the minimal Python client and the bash script "
        f"{cell(rows['bash']['vs_minimal-curl'], 'x')} the minimal curl client ("
        f"{cell(rows['bash']['vs_minimal-python'], 'x')} the Python one). Package: "
        f"{breakdown(rows, 'package', int(size))}. Bash script: {breakdown(rows, 'bash', int(size))}. Peak RSS: "
        f"package {cell(rows['package']['peak_rss_mib'], 'MiB')}, bash script "
        f"{cell(rows['bash']['peak_rss_mib'], 'MiB')}."
    )
