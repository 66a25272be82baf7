"""BENCHMARKS.md and results.json from one run's results (or re-rendered later from the JSON alone)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import first_request, keeper, overhead, readiness, replicas, several, stack, warm_cost
from bench.stats import DASH, seconds
from bench.targets import Target

Renderer = Callable[[dict[str, Any]], list[str]]
HEADLINES: dict[str, Callable[[dict[str, Any]], str]] = {
    "first_request": first_request.headline,
    "warm_cost": warm_cost.headline,
    "overhead": overhead.headline,
    "readiness": readiness.headline,
    "several": several.headline,
    "keeper": keeper.headline,
    "stack": stack.headline,
    "replicas": replicas.headline,
}
SECTION_DOCS: dict[str, tuple[str, Renderer, Callable[[dict[str, Any]], list[Target]], str | None]] = {
    "first_request": (
        "1. First-request latency: cold, preloaded, steady (real server)",
        first_request.render,
        first_request.targets,
        first_request.__doc__,
    ),
    "warm_cost": ("2. Warm-request cost (real server)", warm_cost.render, warm_cost.targets, warm_cost.__doc__),
    "overhead": ("3. Own overhead (fake server)", overhead.render, overhead.targets, overhead.__doc__),
    "readiness": ("4. Readiness detection lag", readiness.render, readiness.targets, readiness.__doc__),
    "several": ("5. Several models and concurrency (real server)", several.render, several.targets, several.__doc__),
    "keeper": ("6. Keeping models warm: watch and check modes", keeper.render, keeper.targets, keeper.__doc__),
    "stack": ("7. The compose stack: up to resident (real Docker engine)", stack.render, stack.targets, stack.__doc__),
    "replicas": ("8. Replicas: fan-out overhead", replicas.render, replicas.targets, replicas.__doc__),
}


def all_targets(results: dict[str, Any]) -> list[Target]:
    found: list[Target] = []
    for key, (_, _, judge, _) in SECTION_DOCS.items():
        data = results["sections"].get(key)
        if data:
            found += judge(data)
    return found


def write_json(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, default=str) + "\n")


def write_markdown(results: dict[str, Any], path: Path, plot: Path | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(markdown(results, plot.name if plot else None, path.parent, plot)) + "\n")


def markdown(results: dict[str, Any], plot_name: str | None, md_dir: Path, plot: Path | None) -> list[str]:
    meta = results["meta"]
    machine = meta["machine"]
    lines = [
        "# Benchmarks",
        "",
        f"Written by `python -m bench --{meta['mode']}` (see README, *Benchmarks*) on {machine['date']}, "
        f"in one run of {seconds(meta['duration'])}; {meta['reps']} repetitions of every figure. Every figure "
        f"is a **median ({DASH.join(('min', 'max'))})**; every ratio is taken per repetition against a "
        "baseline measured in the same repetition, and conclusions are drawn from the ratios: the machine "
        "is shared and noisy, so absolute times vary from run to run.",
        "",
        "## Machine and versions",
        "",
        f"- {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB, {machine['os']} "
        f"(kernel {machine['kernel']}); GPU: {machine.get('gpu', 'unknown')}. Load average at the start: "
        f"{' / '.join(f'{v:.2f}' for v in machine['load_average_start'])}" + _load_end(meta),
        f"- Ollama {meta.get('ollama_version') or '(real server not used)'} (`ollama serve`, "
        "`OLLAMA_CONTEXT_LENGTH=2048`), models SmolLM2-135M-Instruct Q4_1 and tiny synthetic llamas "
        "(testkit); fake server: `testkit/fake_ollama.py`.",
        f"- Python {machine['python']} (requests {machine['requests']}, tenacity {machine['tenacity']}), "
        f"{machine['bash']}, {machine['curl'].split(' (')[0]}.",
        f"- Measured code (`preloader/`, `fallback/preload_models.sh`): commit {machine['commit'] or 'unknown'}"
        + (", with uncommitted changes." if machine["uncommitted"] else ", unmodified."),
        "",
        "## Targets",
        "",
        "| target | goal | this run | verdict | why / note |",
        "|---|---|---|---|---|",
    ]
    for target in all_targets(results):
        lines.append(f"| {target.name} | {target.goal} | {target.measured} | {target.verdict} | {target.note} |")
    if plot_name and plot is not None:
        lines += ["", f"![detection lag and first-request latency]({_relative(plot, md_dir)})"]
    for key, (title, render, _, doc) in SECTION_DOCS.items():
        data = results["sections"].get(key)
        lines += ["", f"## {title}", ""]
        if not data:
            lines.append(f"Not measured in this run{_why_not(results, key)}.")
            continue
        lines += [_paragraph(doc), "", *render(data)]
    lines += ["", "## Reading these numbers", ""]
    lines += [f"- {HEADLINES[key](data)}" for key, data in results["sections"].items() if data]
    return lines


def _load_end(meta: dict[str, Any]) -> str:
    end = meta.get("load_average_end")
    return f", at the end: {' / '.join(f'{v:.2f}' for v in end)}." if end else "."


def _why_not(results: dict[str, Any], key: str) -> str:
    reason = results["meta"].get("skipped", {}).get(key)
    return f" ({reason})" if reason else ""


def _paragraph(doc: str | None) -> str:
    """A module docstring minus its title line, as the section's description."""
    if not doc:
        return ""
    body = doc.strip().split("\n\n", 1)
    return body[1].strip() if len(body) > 1 else ""


def _relative(target: Path, start: Path) -> str:
    try:
        return str(target.resolve().relative_to(start.resolve()))
    except ValueError:
        return str(target)
