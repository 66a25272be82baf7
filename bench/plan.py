"""What one benchmark run measures (the plan) and what its sections share while it runs (the context)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TextIO

from bench.real import RealKit

SECTIONS = ("first_request", "warm_cost", "overhead", "readiness", "several", "keeper", "stack", "replicas")
# readiness has a real part too; keeper brings its own real server or falls back to the fake
REAL_SECTIONS = frozenset({"first_request", "warm_cost", "several"})


class Unavailable(Exception):  # a reason, not an error: the section is skipped, not failed
    """What a section needs is not on this machine (no Docker engine, no image): the message says what to do."""


@dataclass(frozen=True)
class Plan:
    mode: str
    reps: int
    sections: tuple[str, ...] = SECTIONS
    real: bool = True  # run the parts that need a real `ollama serve`
    # Own overhead: models per run, and the fake's load delay. 0.25 s is the floor of a real load on this
    # kind of machine (tiny-llama: spawning the runner), so the smallest realistic share of load time.
    overhead_sizes: tuple[int, ...] = (1, 4, 16)
    load_delay: float = 0.25
    overhead_baselines: bool = True  # also run the curl baseline (the bash script's like-for-like)
    # Readiness: the polling loop's interval and whether the real-server part runs.
    poll_interval: float = 5.0
    # Several models: (models, concurrency) pairs.
    several_cases: tuple[tuple[int, int], ...] = ((1, 1), (2, 1), (4, 1), (2, 2), (4, 2), (4, 4))
    # Keeper: seconds an idle keeper is measured (its CPU target is defined over ten minutes).
    keeper_idle: float = 600.0
    # Stack: `docker compose up` repetitions per stack (each from a clean `down -v`), and the idle span over
    # which the engine's CPU is measured.
    stack_reps: int = 5
    stack_idle: float = 60.0

    def with_overrides(
        self,
        *,
        reps: int | None,
        sections: tuple[str, ...] | None,
        real: bool | None,
        sizes: tuple[int, ...] | None,
        keeper_idle: float | None = None,
    ) -> Plan:
        plan = self
        if reps is not None:
            plan = replace(plan, reps=reps, stack_reps=reps)
        if sections is not None:
            plan = replace(plan, sections=sections)
        if real is not None:
            plan = replace(plan, real=real)
        if sizes is not None:
            plan = replace(plan, overhead_sizes=sizes)
        if keeper_idle is not None:
            plan = replace(plan, keeper_idle=keeper_idle)
        return plan


QUICK = Plan(
    mode="quick",
    reps=5,
    overhead_sizes=(1, 16),
    several_cases=((1, 1), (2, 1), (4, 1), (4, 2), (4, 4)),
    keeper_idle=60.0,
    stack_reps=3,
    stack_idle=20.0,
)
FULL = Plan(mode="full", reps=10)


@dataclass
class Context:
    """Per-run state handed to every section: the plan, scratch space, the real kit, progress output."""

    plan: Plan
    scratch: Path
    out: TextIO = sys.stderr
    kit: RealKit | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def pycache(self) -> Path:
        return self.scratch / "pycache"

    def say(self, message: str) -> None:
        elapsed = time.monotonic() - self.started
        self.out.write(f"[bench {elapsed:6.1f} s] {message}\n")
        self.out.flush()

    def real_kit(self) -> RealKit:
        if self.kit is None:
            self.say("registering SmolLM2-135M and the tiny llamas with a real ollama serve")
            self.kit = RealKit.prepare(self.scratch / "real", tiny_count=max(n for n, _ in self.plan.several_cases))
        return self.kit
