"""What the numbers were taken on: machine, load, versions, and which code was measured."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.procs import REPO


def describe() -> dict[str, Any]:
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "cores": len(os.sched_getaffinity(0)),
        "memory_gib": round(_mem_total_kib() / 2**20, 1),
        "os": _os_name(),
        # Only whether one is visible: the numbers here mean CPU inference unless a GPU shows up.
        "gpu": "present" if any(Path(d).exists() for d in ("/dev/nvidia0", "/dev/kfd")) else "none",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "requests": _dist_version("requests"),
        "tenacity": _dist_version("tenacity"),
        "bash": _first_line(["bash", "--version"]),
        "curl": _first_line(["curl", "--version"]),
        "load_average_start": os.getloadavg(),
        "commit": _git("rev-parse", "--short", "HEAD"),
        # Uncommitted changes to the measured code, so a reader knows the commit alone does not describe it.
        "uncommitted": _git("status", "--porcelain", "--", "preloader", "fallback/preload_models.sh"),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_kib() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.system()


def _dist_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _first_line(argv: list[str]) -> str:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "not found"
    return result.stdout.splitlines()[0] if result.stdout else "unknown"


def _git(*args: str) -> str:
    try:
        result = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return ""
    return result.stdout.strip()
