"""The run's result: one row per model, a summary table for people, a JSON document for machines."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from preloader.durations import format_seconds
from preloader.verify import Residency
from preloader.warm import WarmOutcome

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_CONFIG = 2
EXIT_SERVER_NOT_READY = 3
EXIT_MODELS_NOT_READY = 4
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


@dataclass(frozen=True)
class ModelRow:
    model: str
    kind: str | None
    outcome: str  # warmed | failed | skipped | not-resident | pending
    seconds: float | None
    load_seconds: float | None
    resident: bool | None
    where: str | None
    expires: str | None
    context_length: int | None
    error: str | None
    pulled: bool = False  # OLLAMA_PRELOAD_PULL=missing pulled it during this run

    @property
    def ok(self) -> bool:
        return self.outcome in ("warmed", "skipped")


@dataclass(frozen=True)
class Report:
    server: str
    server_version: str | None
    waited_seconds: float | None
    models: tuple[ModelRow, ...]
    exit_status: int
    best_effort: bool = False
    note: str | None = None  # why the run ended early, if it did

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def model_rows(
    models: Sequence[str], outcomes: Sequence[WarmOutcome], residency: dict[str, Residency]
) -> tuple[ModelRow, ...]:
    """One row per listed model, in listed order; models never reached are `pending`."""
    by_model = {outcome.model: outcome for outcome in outcomes}
    rows = []
    for model in models:
        outcome = by_model.get(model)
        if outcome is None:
            rows.append(ModelRow(model, None, "pending", None, None, None, None, None, None, None))
            continue
        where = residency.get(model)
        status: str = outcome.outcome
        error = outcome.error
        if where is not None and not where.resident and where.required:
            status, error = "not-resident", where.message
        rows.append(
            ModelRow(
                model=model,
                kind=outcome.kind,
                outcome=status,
                seconds=outcome.seconds,
                load_seconds=outcome.load_seconds,
                resident=where.resident if where else None,
                where=where.where if where else None,
                expires=where.expires if where else None,
                context_length=where.context_length if where else None,
                error=error,
                pulled=outcome.pulled,
            )
        )
    return tuple(rows)


def models_status(rows: Sequence[ModelRow]) -> int:
    return EXIT_OK if all(row.ok for row in rows) else EXIT_MODELS_NOT_READY


def summary_lines(report: Report) -> list[str]:
    """A short table: model, kind, time, resident, where, expiry; then the verdict."""
    header = ("MODEL", "KIND", "TIME", "LOAD", "RESIDENT", "WHERE", "EXPIRES")
    table = [header] + [
        (
            row.model,
            row.kind or "-",
            format_seconds(row.seconds) if row.seconds is not None else "-",
            format_seconds(row.load_seconds) if row.load_seconds is not None else "-",
            {True: "yes", False: "NO", None: "-"}[row.resident] if row.outcome != "skipped" else "skipped",
            row.where or "-",
            row.expires or "-",
        )
        for row in report.models
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip() for line in table]
    return [*lines, f"preloader: {verdict(report)}"]


def verdict(report: Report) -> str:
    ready = sum(1 for row in report.models if row.outcome == "warmed")
    skipped = sum(1 for row in report.models if row.outcome == "skipped")
    failed = [row.model for row in report.models if not row.ok]
    text = f"{ready} of {len(report.models)} model(s) warmed and resident"
    if skipped:
        text += f", {skipped} skipped"
    if failed:
        text += f"; not ready: {', '.join(failed)}"
    if report.note:
        text += f"; {report.note}"
    suffix = " (best effort: reported as success)" if report.best_effort and report.exit_status == 0 else ""
    return f"{text} (exit {report.exit_status}){suffix}"


def write_report(report: Report, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    temporary.replace(path)  # readers never see half a report
