"""The report file: checked before anything is sent, replaced atomically, streams written in place, no hang."""

from __future__ import annotations

import json
import os
import stat
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from preloader.report import Report, ReportPathError, check_report_path, write_report

REPORT = Report(server="http://127.0.0.1:11434", server_version="0.11.4", waited_seconds=0.1, models=(), exit_status=0)


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda tmp: tmp / "missing" / "report.json", "does not exist"),
        (lambda tmp: tmp, "is a directory"),
        (lambda tmp: Path("/proc/report.json"), "cannot create files"),  # unwritable even for root
        (lambda tmp: _link(tmp / "to-dir", tmp), "is a directory"),
        (lambda tmp: _file(tmp / "file") / "report.json", "Not a directory"),
    ],
)
def test_a_report_path_that_cannot_be_written_is_found_before_the_run(
    make: object, fragment: str, tmp_path: Path
) -> None:
    with pytest.raises(ReportPathError, match=fragment):
        check_report_path(make(tmp_path))  # type: ignore[operator]


def test_a_read_only_directory_is_found_before_the_run() -> None:
    # Root writes anywhere, so under root the check runs in a forked child that became `nobody`: never skipped.
    with tempfile.TemporaryDirectory() as top:
        os.chmod(top, 0o755)
        read_only = Path(top) / "read-only"
        read_only.mkdir()
        read_only.chmod(0o555)
        assert "cannot create files" in _as_unprivileged(lambda: check_report_path(read_only / "report.json"))


def _as_unprivileged(action: Callable[[], object]) -> str:
    """The ReportPathError text that `action` raises, run as uid 65534 when we are root."""
    if os.geteuid() != 0:
        try:
            action()
        except ReportPathError as exc:
            return str(exc)
        return ""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop privileges, report, and leave without running pytest's exit handlers
        message = ""
        try:
            os.setgid(65534)
            os.setuid(65534)
            action()
        except ReportPathError as exc:
            message = str(exc)
        except BaseException as exc:
            message = f"unexpected {type(exc).__name__}: {exc}"
        finally:
            os.write(write_end, message.encode())
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        message = pipe.read().decode()
    os.waitpid(pid, 0)
    return message


@pytest.mark.parametrize(
    "make",
    [
        lambda tmp: tmp / "new.json",
        lambda tmp: _file(tmp / "old.json"),
        lambda tmp: Path("/dev/null"),
        lambda tmp: _fifo(tmp / "fifo"),
        lambda tmp: _link(tmp / "link.json", _file(tmp / "target.json")),
    ],
)
def test_writable_report_paths_pass_the_check_without_leaving_anything_behind(make: object, tmp_path: Path) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    before = sorted(os.listdir(tmp_path))
    check_report_path(path)
    assert sorted(os.listdir(tmp_path)) == before


def test_a_regular_file_is_replaced_atomically_by_a_new_file(tmp_path: Path) -> None:
    path = _file(tmp_path / "report.json")
    path.chmod(0o640)
    inode = path.stat().st_ino
    write_report(REPORT, path)
    assert path.stat().st_ino != inode  # a new file renamed over the old one, never a half-written old one
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert json.loads(path.read_text())["server_version"] == "0.11.4"
    assert sorted(os.listdir(tmp_path)) == ["report.json"]


def test_a_symlink_to_a_regular_file_stays_a_symlink(tmp_path: Path) -> None:
    target = _file(tmp_path / "target.json")
    link = _link(tmp_path / "report.json", target)
    write_report(REPORT, link)
    assert link.is_symlink() and json.loads(target.read_text())["exit_status"] == 0


def test_a_device_is_written_in_place() -> None:
    write_report(REPORT, Path("/dev/null"))
    assert Path("/dev/null").is_char_device()


def test_a_fifo_without_a_reader_fails_at_once_instead_of_blocking(tmp_path: Path) -> None:
    fifo = _fifo(tmp_path / "fifo")
    start = time.monotonic()
    with pytest.raises(OSError, match="nobody is reading"):
        write_report(REPORT, fifo)
    assert time.monotonic() - start < 1


def test_a_fifo_with_a_reader_gets_the_whole_report(tmp_path: Path) -> None:
    fifo = _fifo(tmp_path / "fifo")
    received: list[bytes] = []
    reader_ready = threading.Event()

    def read() -> None:
        descriptor = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        reader_ready.set()
        chunks = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                chunk = os.read(descriptor, 65536)
            except BlockingIOError:
                time.sleep(0.01)
                continue
            if not chunk:  # no writer yet, or the writer is done
                if chunks:
                    break
                time.sleep(0.01)
                continue
            chunks.append(chunk)
        os.close(descriptor)
        received.append(b"".join(chunks))

    thread = threading.Thread(target=read)
    thread.start()
    reader_ready.wait(5)
    write_report(REPORT, fifo)
    thread.join(10)
    assert json.loads(received[0])["server"] == "http://127.0.0.1:11434"
    assert fifo.is_fifo()


def _file(path: Path) -> Path:
    path.write_text("{}\n")
    return path


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _link(path: Path, target: Path) -> Path:
    path.symlink_to(target)
    return path
