"""6. Keeping models warm: watch mode's re-warm lag and idle cost, check mode's wall time.

The keeper runs as users run it, `python -m preloader --mode watch` in a process of its own, with
`OLLAMA_PRELOAD_KEEP_ALIVE=-1` (models pinned, so an idle keeper only reads `/api/ps`), against a real
`ollama serve` of the version the section names (SmolLM2-135M); with `--no-real` or without that binary,
against the fake server, and the tables say which.

* Re-warm lag: the keeper watches with a short interval (2 s, so the section stays short; the lag scales
  with the interval). Once SmolLM2 is resident the model goes cold: (a) the bench sends someone else's
  `{"model": …, "keep_alive": 0}`, or (b) the server is killed (SIGKILL to its process group, runner
  included) and started again on the same port and models directory. The bench polls `/api/ps` every 20 ms;
  lag = from the cold event to SmolLM2 listed again (0.32 lists a model only once its load has answered).
  Beside it, the server's `load_duration` of that very re-warm, read from the keeper's `/ready`. The cold
  events are spread over the keeper's cycle across the repetitions (the bench waits interval * (i + 1/2) /
  reps after `/ready` reported the previous re-warm), as a polling loop's lag depends on that phase.
* Idle cost: a keeper with the default interval, its model resident and nothing happening (no probes, no
  other client): CPU from `/proc/<pid>/stat` (utime + stime) over the duration as a share of one core,
  counted from 2 s after `/ready` turned 200; RSS from `/proc/<pid>/status` (VmRSS sampled every second,
  the maximum; VmHWM, the peak since start-up, beside it).
* Check: `python -m preloader --mode check` as a process against the server with the model resident,
  interleaved with `python -c pass` (Python's own start-up on this machine) in the same repetition; and,
  in a third process, the time to import `preloader.cli` and the time `main(["--mode", "check"])` takes.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from bench import procs
from bench.plan import Context
from bench.real import SMOLLM2, VERSION, RealKit
from bench.stats import DASH, DIVIDE, MINUS, cell, paired_ratios, seconds, summarize
from bench.targets import Target
from preloader.keeper import DEFAULT_INTERVAL
from testkit.fake_ollama import FakeOllama
from testkit.gguf_models import smollm2_gguf
from testkit.real_ollama import RealOllama, find_ollama_binary, free_port, qualify

REWARM_INTERVAL = 2.0
PS_POLL = 0.02
SETTLE = 2.0  # after /ready: start-up (imports, the first warm) is over
RSS_EVERY = 1.0
FAKE_MODEL = "bench-keeper"
FAKE_LOAD = 0.4  # the contract's SmolLM2-like load time
TARGET_SLACK = 0.5  # median lag ≤ interval + load + this
TARGET_CPU = 0.5  # % of one core
TARGET_RSS = 40.0  # MiB
TARGET_IDLE_SPAN = 600.0  # the CPU target is defined over ten minutes
CASES = {"unload": "unloaded by another client (`keep_alive: 0`)", "restart": "server killed and restarted"}
INPROCESS = """
import json, sys, time
t0 = time.perf_counter()
from preloader.cli import main
t1 = time.perf_counter()
code = main(["--mode", "check"])
t2 = time.perf_counter()
print("BENCH-KEEPER " + json.dumps({"import": t1 - t0, "main": t2 - t1, "exit": code}), flush=True)
"""


# --- the server under the keeper ---------------------------------------------------------------------


@dataclass
class Subject:
    """The server the keeper watches, as the bench drives it: its URL, its model, how to restart it."""

    kind: str  # "real" or "fake"
    url: str
    model: str
    version: str
    restart: Callable[[], None] | None  # kill and start again on the same port; None: the fake cannot


def ps_names(url: str, timeout: float = 1.0) -> set[str] | None:
    """The names `/api/ps` lists, or None when the server does not answer (down, restarting)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        connection.request("GET", "/api/ps")
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            return None
        return {str(m.get("name")) for m in json.loads(body).get("models", [])}
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        connection.close()


def unload(url: str, model: str) -> None:
    """Another client's `keep_alive: 0`: Ollama unloads the model whatever its pin."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        body = json.dumps({"model": model, "keep_alive": 0})
        connection.request("POST", "/api/generate", body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        text = response.read()
        if response.status != 200:
            raise RuntimeError(f"unload of {model} answered {response.status}: {text[:200]!r}")
    finally:
        connection.close()


@contextlib.contextmanager
def subject(ctx: Context) -> Iterator[Subject]:
    """The real server of VERSION with SmolLM2 registered, else a fake; stopped on exit."""
    binary = find_ollama_binary(VERSION) if ctx.plan.real else None
    if binary is None or smollm2_gguf() is None:
        why = "--no-real" if not ctx.plan.real else f"no ollama {VERSION} binary or no SmolLM2 GGUF"
        ctx.say(f"keeper: fake server ({why})")
        fake = FakeOllama(version=VERSION, max_loaded=3)
        fake.add_model(FAKE_MODEL, load_delay=FAKE_LOAD)
        fake.start()
        try:
            yield Subject("fake", fake.url, FAKE_MODEL, f"fake {VERSION}", None)
        finally:
            fake.stop()
        return
    ctx.say(f"keeper: registering SmolLM2 with ollama {VERSION}")
    root = ctx.scratch / f"keeper-{VERSION}"
    kit = RealKit(binary, root, root / "models", tiny_count=0)
    try:
        registrar = kit.server()
        registrar.register_model(SMOLLM2, smollm2_gguf())  # type: ignore[arg-type]  # checked above
        kit.stop(registrar)
        server = kit.server()

        def restart() -> None:
            old = kit.servers[-1]
            assert old.pid is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(old.pid, signal.SIGKILL)  # the server and its llama-server runner, at once
            kit.stop(old)  # reaps it
            new = RealOllama(binary, old.state_dir, models_dir=kit.models_dir, port=old.port)
            kit.servers.append(new)
            new.start(wait=False)  # its start-up is part of the lag

        yield Subject("real", server.base_url, SMOLLM2, VERSION, restart)
    finally:
        kit.stop_all()


# --- the keeper as a process -------------------------------------------------------------------------


class KeeperProcess:
    """`python -m preloader --mode watch` in its own session; stopped with SIGTERM, killed only on a timeout."""

    def __init__(self, ctx: Context, target: Subject, interval: float | None) -> None:
        self.port = free_port()
        argv = [*procs.package_command(), "--mode", "watch", "--listen", f"127.0.0.1:{self.port}"]
        if interval is not None:
            argv += ["--watch-interval", f"{interval:g}s"]
        env = procs.clean_env(
            ctx.pycache, OLLAMA_HOST=target.url, OLLAMA_PRELOAD_MODELS=target.model, OLLAMA_PRELOAD_KEEP_ALIVE="-1"
        )
        self._output: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115  # closed in stop()
        self._proc = subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=self._output, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        self.pid = self._proc.pid

    def state(self) -> dict[str, Any] | None:
        """The `/ready` body (200 or 503 both carry it), or None before the endpoint is up."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        try:
            connection.request("GET", "/ready")
            return dict(json.loads(connection.getresponse().read()))
        except (OSError, http.client.HTTPException, ValueError):
            return None
        finally:
            connection.close()

    def model(self) -> dict[str, Any]:
        state = self.state()
        if state is None:
            return {}
        return dict(state["servers"][0]["models"][0])

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"the keeper exited ({self._proc.returncode}):\n{self.output()}")
            state = self.state()
            if state is not None and state.get("ready"):
                return
            time.sleep(0.05)
        raise RuntimeError(f"the keeper was not ready within {timeout:g} s:\n{self.output()}")

    def cpu_seconds(self) -> float:
        # Fields after the command name, which may hold spaces: utime and stime are fields 14 and 15.
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def memory_kib(self) -> dict[str, int]:
        found = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0])
        return found

    def output(self) -> str:
        self._output.seek(0)
        return self._output.read().decode("utf-8", "replace")[-3000:]

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, as Docker and Kubernetes stop it; its exit status (0 expected)."""
        try:
            if self._proc.poll() is None:
                self._proc.send_signal(signal.SIGTERM)
                try:
                    self._proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.pid, signal.SIGKILL)  # our own session only
                    self._proc.wait(5)
            return int(self._proc.returncode)
        finally:
            self._output.close()


# --- the parts ---------------------------------------------------------------------------------------


def run(ctx: Context) -> dict[str, Any]:
    with subject(ctx) as target:
        rewarm = run_rewarm(ctx, target)
        check = run_check(ctx, target)
        idle = run_idle(ctx, target)
    data: dict[str, Any] = {
        "server": target.kind,
        "version": target.version,
        "model": target.model,
        "rewarm_interval": REWARM_INTERVAL,
        "idle_interval": DEFAULT_INTERVAL,
        "rewarm": rewarm,
        "check": check,
        "idle": idle,
    }
    data["summary"] = summarize_runs(data)
    return data


def run_rewarm(ctx: Context, target: Subject) -> list[dict[str, Any]]:
    keeper = KeeperProcess(ctx, target, REWARM_INTERVAL)
    records: list[dict[str, Any]] = []
    try:
        keeper.wait_ready(120)
        cases: dict[str, Callable[[], None]] = {"unload": lambda: unload(target.url, target.model)}
        if target.restart is not None:
            cases["restart"] = target.restart
        for case, event in cases.items():
            for rep in range(ctx.plan.reps):
                offset = REWARM_INTERVAL * (rep + 0.5) / ctx.plan.reps
                record = rewarm_once(keeper, target, event, offset)
                records.append({"case": case, "rep": rep, **record})
                ctx.say(
                    f"keeper re-warm ({case}) rep {rep + 1}/{ctx.plan.reps}: lag {record['lag']:.2f} s, "
                    f"load {seconds(record['load'])}, reason {record['reason']}"
                )
    finally:
        code = keeper.stop()
    for record in records:
        record["keeper_exit"] = code
    return records


def rewarm_once(keeper: KeeperProcess, target: Subject, event: Callable[[], None], offset: float) -> dict[str, Any]:
    before = keeper.model().get("rewarms", {})
    time.sleep(offset)
    cold = time.monotonic()
    event()
    deadline = cold + 3 * REWARM_INTERVAL + 60
    gone_at: float | None = None
    while True:
        now = time.monotonic()
        if now > deadline:
            raise RuntimeError(f"{target.model} not resident again {now - cold:.0f} s after it went cold")
        names = ps_names(target.url)
        present = names is not None and qualify(target.model) in names
        if gone_at is None and not present:
            gone_at = now
        elif gone_at is not None and present:
            back = now
            break
        time.sleep(PS_POLL)
    # The keeper publishes its warm's load_duration right after the warm answers: wait for that count.
    reason, model = None, {}
    while time.monotonic() < back + 10:
        model = keeper.model()
        grown = [k for k, n in model.get("rewarms", {}).items() if n > before.get(k, 0)]
        if grown:
            reason = grown[0]
            break
        time.sleep(0.02)
    return {
        "offset": offset,
        "lag": back - cold,
        "gone_after": gone_at - cold,
        "load": model.get("load_seconds") if reason else None,
        "reason": reason,  # None: something else loaded it (then the figure is not the keeper's)
    }


def run_check(ctx: Context, target: Subject) -> list[dict[str, Any]]:
    env = procs.clean_env(
        ctx.pycache, OLLAMA_HOST=target.url, OLLAMA_PRELOAD_MODELS=target.model, OLLAMA_PRELOAD_KEEP_ALIVE="-1"
    )
    if qualify(target.model) not in (ps_names(target.url) or set()):
        raise RuntimeError(f"{target.model} is not resident before the check calls")
    commands = {
        "check": [*procs.package_command(), "--mode", "check"],
        "python": [sys.executable, "-c", "pass"],
        "inprocess": [sys.executable, "-c", INPROCESS],
    }
    records = []
    calls = 2 * ctx.plan.reps
    for rep in range(calls):
        keys = list(commands)[rep % 3 :] + list(commands)[: rep % 3]
        record: dict[str, Any] = {"rep": rep}
        for key in keys:
            result = procs.run(commands[key], env, timeout=60)
            if result.returncode != 0:
                raise RuntimeError(f"{key} exited {result.returncode}:\n{result.output[-2000:]}")
            record[key] = result.wall
            record[f"{key}_rss_mib"] = result.peak_rss_mib
            if key == "inprocess":
                line = next(x for x in result.output.splitlines() if x.startswith("BENCH-KEEPER "))
                parts = json.loads(line.split(" ", 1)[1])
                record["import"], record["main"] = parts["import"], parts["main"]
        records.append(record)
    ctx.say(
        f"keeper check: {calls} calls, median {cell(summarize([r['check'] for r in records]))}, "
        f"python -c pass {cell(summarize([r['python'] for r in records]))}"
    )
    return records


def run_idle(ctx: Context, target: Subject) -> dict[str, Any]:
    duration = ctx.plan.keeper_idle
    keeper = KeeperProcess(ctx, target, None)
    try:
        keeper.wait_ready(120)
        time.sleep(SETTLE)
        ctx.say(f"keeper idle: measuring for {duration:g} s (interval {DEFAULT_INTERVAL:g} s)")
        cpu_start, start = keeper.cpu_seconds(), time.monotonic()
        rss: list[int] = []
        while time.monotonic() < start + duration:
            rss.append(keeper.memory_kib()["VmRSS"])
            time.sleep(min(RSS_EVERY, max(start + duration - time.monotonic(), 0.0)))
        cpu_end, end = keeper.cpu_seconds(), time.monotonic()
        memory = keeper.memory_kib()
        rss.append(memory["VmRSS"])
        ready_at_end = bool((keeper.state() or {}).get("ready"))
    finally:
        code = keeper.stop()
    result = {
        "duration": end - start,
        "cpu_seconds": cpu_end - cpu_start,
        "cpu_percent": 100 * (cpu_end - cpu_start) / (end - start),
        "rss_max_mib": max(rss) / 1024,
        "rss_samples": len(rss),
        "hwm_mib": memory["VmHWM"] / 1024,
        "ready_at_end": ready_at_end,
        "keeper_exit": code,
        "clock_tick": 1 / os.sysconf("SC_CLK_TCK"),
    }
    ctx.say(
        f"keeper idle: {result['cpu_percent']:.3f} % of one core over {result['duration']:.0f} s, "
        f"RSS max {result['rss_max_mib']:.1f} MiB (peak {result['hwm_mib']:.1f} MiB)"
    )
    return result


# --- summary, report, targets ------------------------------------------------------------------------


def summarize_runs(data: dict[str, Any]) -> dict[str, Any]:
    interval = data["rewarm_interval"]
    rewarm: dict[str, Any] = {}
    for case in CASES:
        mine = [r for r in data["rewarm"] if r["case"] == case]
        if not mine:
            continue
        timed = [r for r in mine if r["load"] is not None]
        rewarm[case] = {
            "lag": summarize([r["lag"] for r in mine]),
            "load": summarize([r["load"] for r in timed]),
            # Per repetition: what the lag adds to one interval and that repetition's own load.
            "slack": summarize([r["lag"] - interval - r["load"] for r in timed]),
            "not_keeper": sum(1 for r in mine if r["reason"] is None),
            "reasons": sorted({r["reason"] for r in timed}),
            "n": len(mine),
        }
    check = data["check"]
    return {
        "rewarm": rewarm,
        "check": {
            "check": summarize([r["check"] for r in check]),
            "python": summarize([r["python"] for r in check]),
            "ratio": summarize(paired_ratios([r["check"] for r in check], [r["python"] for r in check])),
            "ours": summarize([r["check"] - r["python"] for r in check]),
            "import": summarize([r["import"] for r in check]),
            "main": summarize([r["main"] for r in check]),
            "inprocess": summarize([r["inprocess"] for r in check]),
            "check_rss": summarize([r["check_rss_mib"] for r in check if r.get("check_rss_mib") is not None]),
        },
        "idle": data["idle"],
    }


def _where(data: dict[str, Any]) -> str:
    if data["server"] == "real":
        return f"real `ollama serve` {data['version']}, `{data['model']}`"
    return f"fake server ({data['version']}, a {FAKE_LOAD:g} s load), `{data['model']}`"


def render(data: dict[str, Any]) -> list[str]:
    summary = data["summary"]
    interval = data["rewarm_interval"]
    lines = [
        f"Server: {_where(data)}. Re-warm interval {interval:g} s (short on purpose; the default is "
        f"{data['idle_interval']:g} s). Slack = lag {MINUS} interval {MINUS} that repetition's load; the target "
        f"is a median slack ≤ {TARGET_SLACK:g} s.",
        "",
        "| cold event | re-warm lag | server load (keeper's warm) | slack | reason the keeper gave | runs |",
        "|---|---|---|---|---|---:|",
    ]
    for case, label in CASES.items():
        row = summary["rewarm"].get(case)
        if row is None:
            lines.append(f"| {label} | not measured ({data['server']} server) | {DASH} | {DASH} | {DASH} | 0 |")
            continue
        reasons = ", ".join(f"`{r}`" for r in row["reasons"]) or DASH
        lines.append(
            f"| {label} | {cell(row['lag'])} | {cell(row['load'])} | {cell(row['slack'])} | {reasons} | {row['n']} |"
        )
    idle = summary["idle"]
    lines += [
        "",
        f"Idle keeper (interval {data['idle_interval']:g} s, model pinned and resident, no probes), one run of "
        f"{idle['duration']:.0f} s: **{idle['cpu_percent']:.3f} % of one core** ({idle['cpu_seconds']:.2f} s CPU; "
        f"the kernel counts in {idle['clock_tick'] * 1000:.0f} ms ticks), **RSS at most "
        f"{idle['rss_max_mib']:.1f} MiB** over {idle['rss_samples']} samples (peak since start-up "
        f"{idle['hwm_mib']:.1f} MiB). Still ready at the end: {'yes' if idle['ready_at_end'] else 'no'}; exit "
        f"status on SIGTERM: {idle['keeper_exit']}.",
        "",
        "| `--mode check` | wall time |",
        "|---|---|",
    ]
    check = summary["check"]
    lines += [
        f"| `python -m preloader --mode check` (process) | {cell(check['check'])} |",
        f"| `python -c pass` (same run, interleaved) | {cell(check['python'])} |",
        f"| check {DIVIDE} `python -c pass` | {cell(check['ratio'], 'x')} |",
        f"| check {MINUS} `python -c pass` (ours) | {cell(check['ours'])} |",
        f"| in the process: `import preloader.cli` | {cell(check['import'])} |",
        f"| in the process: `main(['--mode', 'check'])` (config, one `/api/ps`, the verdict) | {cell(check['main'])} |",
        f"| peak RSS of the check process | {cell(check['check_rss'], 'MiB')} |",
    ]
    return lines


def _rewarm_target(data: dict[str, Any], case: str) -> Target:
    row = data["summary"]["rewarm"].get(case)
    interval = data["rewarm_interval"]
    name = f"keeper re-warm lag, {CASES[case].split(' (')[0]}, {data['server']} server"
    goal = f"median ≤ interval + load + {TARGET_SLACK:g} s"
    if row is None or not row["slack"]:
        return Target(name, goal, DASH, None, f"the {data['server']} server cannot be restarted in place")
    met = row["slack"]["median"] <= TARGET_SLACK and row["not_keeper"] == 0
    note = (
        f"interval {interval:g} s; the lag is where the cold event falls in the keeper's cycle, plus the load: "
        f"slack {cell(row['slack'])}"
    )
    if case == "restart" and "restart" not in row["reasons"]:
        note += (
            "; the keeper named it "
            + ", ".join(f"`{r}`" for r in row["reasons"])
            + ": a restart quicker than its interval, same version, looks to it like an unload"
        )
    if row["not_keeper"]:
        note += f"; in {row['not_keeper']} run(s) the keeper did not report a re-warm"
    return Target(name, goal, f"{cell(row['lag'])} (load {cell(row['load'])})", met, note)


def targets(data: dict[str, Any]) -> list[Target]:
    idle = data["summary"]["idle"]
    span = idle["duration"]
    short = (
        f"measured over {span:.0f} s, the target is over {TARGET_IDLE_SPAN:.0f} s (--full)"
        if span < TARGET_IDLE_SPAN * 0.99
        else ""
    )
    return [
        *(_rewarm_target(data, case) for case in CASES),
        Target(
            f"idle keeper CPU, {data['server']} server",
            f"≤ {TARGET_CPU:g} % of one core over ten minutes",
            f"{idle['cpu_percent']:.3f} %",
            idle["cpu_percent"] <= TARGET_CPU,
            short,
        ),
        Target(
            f"idle keeper RSS, {data['server']} server",
            f"≤ {TARGET_RSS:g} MiB",
            f"{idle['rss_max_mib']:.1f} MiB",
            idle["rss_max_mib"] <= TARGET_RSS,
            f"peak since start-up {idle['hwm_mib']:.1f} MiB",
        ),
    ]


def headline(data: dict[str, Any]) -> str:
    summary = data["summary"]
    lags = "; ".join(
        f"{CASES[case].split(' (')[0]}: {cell(row['lag'])} with a load of {cell(row['load'])}"
        for case, row in summary["rewarm"].items()
    )
    idle, check = summary["idle"], summary["check"]
    return (
        f"**Keeper.** With a {data['rewarm_interval']:g} s interval a cold model is resident again after: {lags}. "
        f"Idle, the keeper uses {idle['cpu_percent']:.3f} % of one core and at most {idle['rss_max_mib']:.1f} MiB. "
        f"`--mode check` takes {cell(check['check'])}, {cell(check['ratio'], 'x')} Python's own start-up "
        f"({cell(check['python'])}); of the rest, importing the package takes {cell(check['import'])} and the "
        f"check itself {cell(check['main'])}."
    )
