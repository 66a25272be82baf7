"""4. Readiness detection lag: how long after the server becomes ready the first warm request arrives.

Four approaches: the preloader (package and bash script), a `while ! ollama ps; do sleep 5; done` loop and
a fixed `sleep` before warming (both re-implemented minimally in `bench/alternatives`; the loop runs the
real `ollama` CLI when one is here). Each approach is started together with its own server:

* fake server with a start delay D (connections refused until then). D is spread evenly over one polling
  interval across the repetitions (D_i = 5 s * (i + 1/2) / reps), because a polling loop's lag depends on
  where the ready moment falls between two polls. The ready moment is exact and the fake records when the
  warm request arrives. The four approaches run side by side, each against its own fake, like four
  sidecars started with their servers;
* real `ollama serve`, spawned right after the approach (started alongside, as in a compose stack). Its
  ready moment comes from a 5 ms probe of `/api/version`, the warm request's arrival from a recording
  proxy (`bench/proxy.py`). The preloader and the bash script run alone, the loop and the sleep together.

The fixed sleep is given the benefit of hindsight: the shortest whole number of seconds that is never too
early in this run. Lag = arrival of the first `POST /api/generate` minus the ready moment.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from bench import procs
from bench.fake import fake_server
from bench.plan import Context
from bench.proxy import ReadinessProbe, RecordingProxy
from bench.real import TINY, VERSION
from bench.stats import DASH, DIVIDE, cell, paired_ratios, summarize
from bench.targets import Target
from preloader.retries import FIRST_POLL as FIRST_WAIT
from preloader.retries import MAX_POLL as MAX_WAIT
from testkit.real_ollama import RealOllama, find_ollama_binary

TARGET_LAG = 0.15
APPROACHES = {
    "package": "preloader (Python package)",
    "bash": "preloader (bash script)",
    "poll-loop": "`while ! ollama ps; do sleep 5; done`",
    "fixed-sleep": "fixed `sleep`",
}
MODEL = "bench-ready"
WAIT = {"OLLAMA_PRELOAD_WAIT_TIMEOUT": "60"}
Command = Callable[[str, str], list[str]]


def commands(ctx: Context, sleep_seconds: float) -> dict[str, Command]:
    cli = find_ollama_binary(VERSION)  # without it, the loop checks with curl instead of `ollama ps`
    interval = ctx.plan.poll_interval
    return {
        "package": lambda _url, _model: procs.package_command(),
        "bash": lambda _url, _model: procs.bash_command(),
        "poll-loop": lambda url, model: procs.poll_loop_command(url, model, interval, cli),
        "fixed-sleep": lambda url, model: procs.fixed_sleep_command(url, model, sleep_seconds),
    }


def start_delays(ctx: Context) -> list[float]:
    reps, interval = ctx.plan.reps, ctx.plan.poll_interval
    return [interval * (index + 0.5) / reps for index in range(reps)]


def run(ctx: Context) -> dict[str, Any]:
    runs = run_fake(ctx)
    real: list[dict[str, Any]] = []
    skipped = None
    if ctx.plan.real and ctx.kit is not None:
        real = run_real(ctx)
    else:
        skipped = "the real-server part did not run (no real Ollama, or --no-real)"
    data: dict[str, Any] = {
        "runs": runs + real,
        "real_skipped": skipped,
        "poll_interval": ctx.plan.poll_interval,
        "poll_check": "ollama ps" if find_ollama_binary(VERSION) is not None else "curl -sf /api/ps",
    }
    data["summary"] = summarize_runs(data)
    return data


# --- fake server -------------------------------------------------------------------------------------


def run_fake(ctx: Context) -> list[dict[str, Any]]:
    delays = start_delays(ctx)
    sleep_seconds = float(math.ceil(max(delays)))
    cmds = commands(ctx, sleep_seconds)
    runs: list[dict[str, Any]] = []
    for rep, delay in enumerate(delays):
        # Side by side: each waits on its own fake, and the two sleepers wake when the preloaders are done.
        order = list(APPROACHES)[rep % len(APPROACHES) :] + list(APPROACHES)[: rep % len(APPROACHES)]
        runs += fake_round(ctx, {key: cmds[key] for key in order}, delay, rep)
        mine = {r["approach"]: r["lag"] for r in runs if r["rep"] == rep}
        ctx.say(f"readiness (fake, start delay {delay:.2f} s) rep {rep + 1}/{ctx.plan.reps}: " + _lags(mine))
    for record in runs:
        record["sleep_seconds"] = sleep_seconds if record["approach"] == "fixed-sleep" else None
    return runs


def fake_round(ctx: Context, approaches: dict[str, Command], delay: float, rep: int) -> list[dict[str, Any]]:
    """Start one delayed fake per approach and the approaches with them; lag from the fakes' own records."""
    fakes, ready = {}, {}
    for key in approaches:
        fakes[key] = fake_server([MODEL], start_delay=delay)
        ready[key] = time.monotonic() + delay  # the fake starts listening `delay` after start()
    launched = {}
    for key, command in approaches.items():
        env = procs.clean_env(ctx.pycache, OLLAMA_HOST=fakes[key].url, OLLAMA_PRELOAD_MODELS=MODEL, **WAIT)
        launched[key] = procs.Launched(command(fakes[key].url, MODEL), env)
    records = []
    for key, process in launched.items():
        result = process.finish(timeout=90)
        warms = fakes[key].requests_to("/api/generate")
        fakes[key].stop()
        records.append(
            {
                "server": "fake",
                "approach": key,
                "rep": rep,
                "ready_after": ready[key] - result.started,
                "lag": warms[0].at - ready[key] if warms else None,
                "first_attempt_after": None,  # refused connections leave no trace on the fake
                "exit": result.returncode,
                "wall": result.wall,
            }
        )
    return records


# --- real server -------------------------------------------------------------------------------------


def run_real(ctx: Context) -> list[dict[str, Any]]:
    kit = ctx.kit
    assert kit is not None
    starts = [real_start_time(ctx) for _ in range(3)]
    sleep_seconds = float(max(1, math.ceil(max(starts) * 1.5)))
    ctx.say(f"readiness (real): ollama serve answers {min(starts):.2f} to {max(starts):.2f} s after its spawn")
    cmds = commands(ctx, sleep_seconds)
    runs: list[dict[str, Any]] = []
    for rep in range(ctx.plan.reps):
        alone = ["package", "bash"] if rep % 2 == 0 else ["bash", "package"]
        for key in alone:
            runs += real_round(ctx, {key: cmds[key]}, rep)
        runs += real_round(ctx, {key: cmds[key] for key in ("poll-loop", "fixed-sleep")}, rep)
        mine = {r["approach"]: r["lag"] for r in runs if r["rep"] == rep}
        ctx.say(f"readiness (real) rep {rep + 1}/{ctx.plan.reps}: " + _lags(mine))
    for record in runs:
        record["sleep_seconds"] = sleep_seconds if record["approach"] == "fixed-sleep" else None
    return runs


def real_start_time(ctx: Context) -> float:
    """Seconds from spawning `ollama serve` to its first answer: what the fixed sleep has to cover."""
    assert ctx.kit is not None
    server = ctx.kit.server(start=False)
    probe = ReadinessProbe(server.port)
    try:
        probe.start()
        server.start(wait=False)
        spawned = time.monotonic()
        ready = probe.wait(60)
        if ready is None:
            raise RuntimeError(f"ollama serve did not become ready\n{server.log_tail()}")
        return ready - spawned
    finally:
        probe.stop()
        ctx.kit.stop(server)


def real_round(ctx: Context, approaches: dict[str, Command], rep: int) -> list[dict[str, Any]]:
    assert ctx.kit is not None
    servers: dict[str, RealOllama] = {key: ctx.kit.server(start=False) for key in approaches}
    proxies = {key: RecordingProxy(server.port).start() for key, server in servers.items()}
    probes = {key: ReadinessProbe(server.port).start() for key, server in servers.items()}
    records = []
    try:
        launched = {}
        for key, command in approaches.items():
            url = proxies[key].url
            env = procs.clean_env(ctx.pycache, OLLAMA_HOST=url, OLLAMA_PRELOAD_MODELS=TINY, **WAIT)
            launched[key] = procs.Launched(command(url, TINY), env)
            servers[key].start(wait=False)  # started alongside: right after the approach
        for key, process in launched.items():
            result = process.finish(timeout=90)
            ready = probes[key].wait(5)
            warm = proxies[key].first("POST", "/api/generate")
            attempt = proxies[key].first_connection
            records.append(
                {
                    "server": "real",
                    "approach": key,
                    "rep": rep,
                    "ready_after": ready - result.started if ready is not None else None,
                    "lag": warm.at - ready if warm is not None and ready is not None else None,
                    # The tool's first connection attempt, whether or not the server was up.
                    "first_attempt_after": attempt - result.started if attempt is not None else None,
                    "exit": result.returncode,
                    "wall": result.wall,
                }
            )
    finally:
        for key in approaches:
            probes[key].stop()
            proxies[key].stop()
            ctx.kit.stop(servers[key])
    return records


def _lags(lags: dict[str, float | None]) -> str:
    return ", ".join(f"{key} {'failed' if lag is None else f'{lag:.3f} s'}" for key, lag in lags.items())


# --- summary, report, targets ------------------------------------------------------------------------


def summarize_runs(data: dict[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for server in ("fake", "real"):
        records = [r for r in data["runs"] if r["server"] == server]
        if not records:
            continue
        reps = sorted({r["rep"] for r in records})
        lag = {(r["approach"], r["rep"]): r["lag"] for r in records}
        rows: dict[str, Any] = {}
        for key in APPROACHES:
            mine = [r for r in records if r["approach"] == key]
            lags = [r["lag"] for r in mine if r["lag"] is not None]
            paired = [(lag[(key, rep)], lag[("package", rep)]) for rep in reps]
            usable = [(a, b) for a, b in paired if a is not None and b is not None]
            rows[key] = {
                "lag": summarize(lags),
                "failed": sum(1 for r in mine if r["lag"] is None or r["exit"] != 0),
                "ready_after": summarize([r["ready_after"] for r in mine if r["ready_after"] is not None]),
                "first_attempt_after": summarize(
                    [r["first_attempt_after"] for r in mine if r.get("first_attempt_after") is not None]
                ),
                "vs_package": summarize(paired_ratios([a for a, _ in usable], [b for _, b in usable]))
                if key != "package"
                else None,
                "sleep_seconds": mine[0].get("sleep_seconds") if mine else None,
            }
        summary[server] = rows
    return summary


def render(data: dict[str, Any]) -> list[str]:
    lines = [
        f"Ratios: the approach's lag {DIVIDE} the package's lag in the same repetition. Times are counted from "
        "the approach's spawn; its first attempt is its first connection (real server only: a fake refuses "
        f"without a trace). The polling loop checks with `{data.get('poll_check', 'ollama ps')}`.",
        "",
        "| server | approach | lag | lag / package's | server ready after | approach's first attempt after "
        "| failed runs |",
        "|---|---|---|---|---|---|---:|",
    ]
    for server, rows in data["summary"].items():
        for key, label in APPROACHES.items():
            row = rows[key]
            sleep = f" ({row['sleep_seconds']:g} s)" if row.get("sleep_seconds") else ""
            ratio = cell(row["vs_package"], "x") if key != "package" else "baseline"
            lines.append(
                f"| {server} | {label}{sleep} | {cell(row['lag'])} | {ratio} | {cell(row['ready_after'])} | "
                f"{cell(row['first_attempt_after'])} | {row['failed']} |"
            )
    if data.get("real_skipped"):
        lines += ["", f"Note: {data['real_skipped']}."]
    return lines


def lag_note(row: dict[str, Any]) -> str:
    """What the lag is made of in this run: the poll schedule, or the tool's own start-up."""
    lag, ready, first = row["lag"], row["ready_after"], row["first_attempt_after"]
    if not lag or not ready:
        return ""
    if first and first["median"] >= ready["median"]:
        return (
            f"the server was ready {ready['median'] * 1000:.0f} ms after the start, before the tool's first "
            f"request ({first['median'] * 1000:.0f} ms after its spawn): the lag is the tool's own start-up"
        )
    return (
        f"the lag spreads over {lag['min'] * 1000:.0f}{DASH}{lag['max'] * 1000:.0f} ms: where the ready moment "
        f"falls between two polls of the wait step's backoff ({FIRST_WAIT:g} s, growing by half each time up to "
        f"{MAX_WAIT:g} s)"
    )


def targets(data: dict[str, Any]) -> list[Target]:
    found = []
    for server, rows in data["summary"].items():
        for key in ("package", "bash"):
            lag = rows[key]["lag"]
            met = lag["median"] <= TARGET_LAG and rows[key]["failed"] == 0 if lag else None
            note = lag_note(rows[key])
            found.append(
                Target(
                    f"detection lag, {APPROACHES[key]}, {server} server",
                    f"median ≤ {TARGET_LAG} s (a 5 s polling loop averages ≈ 2.5 s)",
                    cell(lag),
                    met,
                    note,
                )
            )
    return found


def headline(data: dict[str, Any]) -> str:
    parts = []
    for server, rows in data["summary"].items():
        package, loop, sleep = rows["package"]["lag"], rows["poll-loop"]["lag"], rows["fixed-sleep"]["lag"]
        if not package or not loop or not sleep:
            continue
        parts.append(
            f"{server} server: the package's lag is {cell(package)}, the bash script's {cell(rows['bash']['lag'])}; "
            f"the 5 s `ollama ps` loop's {cell(loop)} and the fixed sleep's {cell(sleep)}"
        )
    return (
        "**Readiness.** "
        + "; ".join(parts)
        + ". A polling loop's lag is wherever the ready moment falls in its interval; the preloader's is a "
        f"fraction of its {MAX_WAIT:g} s backoff cap, or, when the server is up before the preloader's first poll, "
        "its own start-up."
    )
