"""The run's result: one row per model, a summary table for people, a JSON document for machines."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import select
import stat
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from preloader.durations import format_seconds
from preloader.errors import PreloaderError
from preloader.logs import valid_utf8
from preloader.results import Residency, WarmOutcome
from preloader.statuses import EXIT_MODELS_NOT_READY, EXIT_OK


@dataclass(frozen=True)
class ModelRow:
    model: str
    kind: str | None
    outcome: str  # warmed | failed | skipped | not-resident | unverified | pending
    seconds: float | None
    load_seconds: float | None
    resident: bool | None
    where: str | None
    expires: str | None
    context_length: int | None
    error: str | None
    pulled: bool = False  # OLLAMA_PRELOAD_PULL=missing pulled it during this run
    replica: str | None = None  # the server it is about, when the run has several

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
    replicas: tuple[ReplicaRow, ...] = ()  # several servers: one entry each; rows then name theirs

    def to_json(self) -> dict[str, Any]:
        document = asdict(self)
        if not self.replicas:  # one server: the report reads exactly as before replicas existed
            del document["replicas"]
            for row in document["models"]:
                del row["replica"]
        return document


@dataclass(frozen=True)
class ReplicaRow:
    server: str
    server_version: str | None
    waited_seconds: float | None
    healthy: bool  # it answered within the wait timeout
    error: str | None = None  # why not

    def ready(self, rows: Sequence[ModelRow]) -> bool:
        return self.healthy and all(row.ok for row in rows if row.replica == self.server)


def model_rows(
    models: Sequence[str],
    outcomes: Sequence[WarmOutcome],
    residency: dict[str, Residency],
    replica: str | None = None,
) -> tuple[ModelRow, ...]:
    """One row per listed model, in listed order; models never reached are `pending`."""
    by_model = {outcome.model: outcome for outcome in outcomes}
    rows = []
    for model in models:
        outcome = by_model.get(model)
        if outcome is None:
            rows.append(ModelRow(model, None, "pending", None, None, None, None, None, None, None, replica=replica))
            continue
        where = residency.get(model)
        status: str = outcome.outcome
        error = outcome.error
        if where is not None and not where.verified:
            status, error = "unverified", where.message
        elif where is not None and not where.resident and where.required:
            status, error = "not-resident", where.message
        rows.append(
            ModelRow(
                model=model,
                kind=outcome.kind,
                outcome=status,
                seconds=outcome.seconds,
                load_seconds=outcome.load_seconds,
                resident=where.resident if where and where.verified else None,
                where=where.where if where else None,
                expires=where.expires if where else None,
                context_length=where.context_length if where else None,
                error=error,
                pulled=outcome.pulled,
                replica=replica,
            )
        )
    return tuple(rows)


def models_status(rows: Sequence[ModelRow]) -> int:
    return EXIT_OK if all(row.ok for row in rows) else EXIT_MODELS_NOT_READY


def summary_lines(report: Report) -> list[str]:
    """A short table: model, kind, time, resident, where, expiry; then the verdict."""
    header: tuple[str, ...] = ("MODEL", "KIND", "TIME", "LOAD", "RESIDENT", "WHERE", "EXPIRES")
    labelled = bool(report.replicas)
    if labelled:
        header = ("REPLICA", *header)
    table = [header] + [
        (
            *((row.replica or "-",) if labelled else ()),
            row.model,
            row.kind or "-",
            format_seconds(row.seconds) if row.seconds is not None else "-",
            format_seconds(row.load_seconds) if row.load_seconds is not None else "-",
            _resident_cell(row),
            row.where or "-",
            row.expires or "-",
        )
        for row in report.models
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip() for line in table]
    return [*lines, f"preloader: {verdict(report)}"]


def verdict(report: Report) -> str:
    if report.replicas:
        return _replicas_verdict(report)
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


def _replicas_verdict(report: Report) -> str:
    """`3 of 3 model(s) warmed and resident on 2 of 3 replica(s); not ready: …`: a model counts when it is
    resident on every replica that answered; the failures name their replica."""
    healthy = {replica.server for replica in report.replicas if replica.healthy}
    models = list(dict.fromkeys(row.model for row in report.models))
    everywhere = [
        model
        for model in models
        if all(row.ok for row in report.models if row.model == model and row.replica in healthy)
        and any(row.replica in healthy for row in report.models if row.model == model)
    ]
    ready = [replica for replica in report.replicas if replica.ready(report.models)]
    text = (
        f"{len(everywhere)} of {len(models)} model(s) warmed and resident on {len(ready)} of "
        f"{len(report.replicas)} replica(s)"
    )
    skipped = {row.model for row in report.models if row.outcome == "skipped"}
    if skipped:
        text += f", {len(skipped)} skipped"
    problems = [f"{replica.server} (server not ready)" for replica in report.replicas if not replica.healthy]
    problems += [f"{row.model} on {row.replica}" for row in report.models if not row.ok and row.replica in healthy]
    if problems:
        text += f"; not ready: {', '.join(problems)}"
    if report.note:
        text += f"; {report.note}"
    suffix = " (best effort: reported as success)" if report.best_effort and report.exit_status == 0 else ""
    return f"{text} (exit {report.exit_status}){suffix}"


class ReportPathError(PreloaderError):
    """The report cannot be written where it was asked for; found before anything is sent."""


WRITE_DEADLINE = 10.0  # seconds a FIFO's reader gets to take the report; nothing waits forever
_STREAM_PREFIXES = ("/dev/", "/proc/")  # /dev/stdout and friends: write into the stream, never replace it


def check_report_path(path: Path) -> None:
    """Can a report be written at `path`? Checked before the first request, so a typo costs nothing.

    A regular file (or a new one) needs a writable existing directory, because it is replaced atomically
    through a temporary file beside it. Anything else (a device, a FIFO, a symlink to one) is written in place.
    A FIFO is not opened here: a reader waiting on it would see our probe as the end of its input.
    """
    try:
        info = path.lstat()
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise ReportPathError(f"{path} cannot be checked: {exc.strerror}") from None
    if info is not None and _writes_in_place(path, info):
        if path.is_dir():
            raise ReportPathError(f"{path} is a directory; give a file path such as {path}/report.json")
        if not os.access(path, os.W_OK):
            raise ReportPathError(f"{path} is not writable")
        return
    if info is not None and stat.S_ISDIR(info.st_mode):
        raise ReportPathError(f"{path} is a directory; give a file path such as {path}/report.json")
    target = _replace_target(path)
    directory = target.parent
    if not directory.is_dir():
        raise ReportPathError(f"the directory {directory} does not exist; create it first")
    try:
        descriptor, probe = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".probe", dir=directory)
    except OSError as exc:
        raise ReportPathError(f"cannot create files in {directory}: {exc.strerror}") from None
    os.close(descriptor)
    os.unlink(probe)


def write_report(report: Report, path: Path) -> None:
    """Write the report: a regular file atomically (readers never see half a report), a stream in place."""
    data = valid_utf8(json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n")
    try:
        info: os.stat_result | None = path.lstat()
    except FileNotFoundError:
        info = None
    if info is not None and _writes_in_place(path, info):
        _write_in_place(path, data)
        return
    target = _replace_target(path)
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        mode = 0o644
    descriptor, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _writes_in_place(path: Path, info: os.stat_result) -> bool:
    if stat.S_ISLNK(info.st_mode):
        if str(path).startswith(_STREAM_PREFIXES) or os.path.realpath(path).startswith(_STREAM_PREFIXES):
            return True
        try:
            return not stat.S_ISREG(path.stat().st_mode)
        except FileNotFoundError:
            return False  # a dangling link: its target is created, atomically
    return not stat.S_ISREG(info.st_mode) and not stat.S_ISDIR(info.st_mode)


def _replace_target(path: Path) -> Path:
    """The file to replace: through a symlink to a regular file, its target (so the link stays a link)."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def _write_in_place(path: Path, data: bytes) -> None:
    """Into a device or FIFO, non-blocking: a FIFO without a reader fails at once (ENXIO) instead of hanging,
    and a reader that stops reading gets WRITE_DEADLINE seconds."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise OSError(exc.errno, "nobody is reading this FIFO, so the report was not written") from None
        raise
    deadline = time.monotonic() + WRITE_DEADLINE
    try:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(descriptor, view) :]
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([], [descriptor], [], left)[1]:
                    raise OSError(
                        errno.ETIMEDOUT, f"the reader took none of the report for {WRITE_DEADLINE:g} s"
                    ) from None
    finally:
        os.close(descriptor)


def _resident_cell(row: ModelRow) -> str:
    if row.outcome in ("skipped", "unverified"):
        return row.outcome
    return {True: "yes", False: "NO", None: "-"}[row.resident]
