"""No failure path left open: every fault ends within its deadline, in a documented status, with one clear line.

Cases taking the `preloader` fixture run against both implementations and assert behaviour only (status,
requests the fake received, secrets absent); wording is checked for the Python CLI alone. Each subprocess runs
with a timeout, so a hang fails the test instead of stalling the suite.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from testkit.fake_ollama import FakeOllama
from tests.fake.conftest import PYTHON, Preloader, bodies, clean_env, settings

SECRET = "hunter2-sk-0123"


def assert_clean_end(result: subprocess.CompletedProcess[str], status: int) -> None:
    """The documented status, no traceback, and never exit 1 for something the server did."""
    output = result.stdout + result.stderr
    assert result.returncode == status, output
    assert "Traceback" not in output and "BrokenPipeError" not in output


def run_bytes(preloader: Preloader, *args: str, **env: str) -> subprocess.CompletedProcess[bytes]:
    """Like Preloader.run, but the output stays bytes, so invalid UTF-8 is seen rather than decoded away."""
    return subprocess.run(
        [*preloader.command, *args], env=clean_env(**env), cwd=preloader.cwd, capture_output=True, timeout=60
    )


# --- 1. nothing hangs ------------------------------------------------------------------------------------

# The real CLI, with one model's warm step replaced by a bug: what any unexpected exception in a worker does.
INJECTED_BUG = """
import sys
from preloader import cli, warm

original = warm.Warmer.warm

def warm_or_fail(self, entry):
    if entry.text == "b":
        raise RuntimeError("injected bug")
    return original(self, entry)

warm.Warmer.warm = warm_or_fail
sys.exit(cli.main())
"""


@pytest.mark.parametrize("concurrency", ["1", "2", "4"])
def test_an_unexpected_error_in_a_worker_ends_the_run_with_exit_1_at_any_concurrency(
    fake: FakeOllama, concurrency: str
) -> None:
    for name in "abcd":
        fake.add_model(name, load_delay=0.2)
    result = subprocess.run(
        [sys.executable, "-c", INJECTED_BUG],
        env=clean_env(**settings(fake, "a,b,c,d", OLLAMA_PRELOAD_CONCURRENCY=concurrency)),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert_clean_end(result, 1)
    (line,) = [line for line in result.stdout.splitlines() if "injected bug" in line]
    assert "internal error: RuntimeError: injected bug" in line


def test_a_closed_pipe_on_stdout_neither_hangs_nor_changes_the_status(fake: FakeOllama, preloader: Preloader) -> None:
    fake.add_model("m")
    process = preloader.popen(**settings(fake, "m"))
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # `ollama-preload | head -0`
    try:
        status = process.wait(timeout=30)
    finally:
        process.kill()
    stderr = process.stderr.read()
    process.stderr.close()
    assert status == 0, stderr
    assert "Traceback" not in stderr and "Broken pipe" not in stderr and "BrokenPipeError" not in stderr
    assert fake.requests_to("/api/generate")  # the run itself went on


def test_a_closed_stdout_neither_hangs_nor_changes_the_status(fake: FakeOllama, preloader: Preloader) -> None:
    fake.add_model("m")
    result = subprocess.run(
        ["bash", "-c", 'exec "$@" >&-', "closed-stdout", *preloader.command],
        env=clean_env(**settings(fake, "m")),
        cwd=preloader.cwd,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert_clean_end(result, 0)
    assert fake.requests_to("/api/generate")


def test_help_into_a_closed_pipe_exits_0_without_a_traceback() -> None:
    process = subprocess.Popen(
        [*PYTHON.command, "--help"], cwd=PYTHON.cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()
    assert process.wait(timeout=30) == 0
    assert "Traceback" not in process.stderr.read()
    process.stderr.close()


def _ps_entry(**fields: object) -> bytes:
    entry = {"name": "m:latest", "model": "m:latest", "size": 10, "size_vram": 0, **fields}
    entry.setdefault("expires_at", "2318-09-13T21:26:43.305574107Z")
    return json.dumps({"models": [entry]}).encode()


# (what the server does wrong, the status it must end in, words the Python CLI's error line must contain)
MALFORMED: list[tuple[str, Callable[[FakeOllama], None], int, str]] = [
    (
        "version-html",
        lambda f: f.fail("/api/version", 200, raw_body=b"<html>login</html>", times=99),
        3,
        "not as Ollama does",
    ),
    (
        "version-array",
        lambda f: f.fail("/api/version", 200, raw_body=b"[]", times=99),
        3,
        "not an object",
    ),
    ("version-truncated", lambda f: f.truncate("/api/version", times=999), 3, "cut"),
    (
        "show-html",
        lambda f: f.fail("/api/show", 200, raw_body=b"<html>", times=99),
        4,
        "not JSON",
    ),
    ("generate-not-json", lambda f: f.fail("/api/generate", 200, raw_body=b"oops", times=99), 4, "not JSON"),
    (
        "generate-string",
        lambda f: f.fail("/api/generate", 200, raw_body=b'"load"', times=99),
        4,
        "not an object",
    ),
    ("generate-truncated", lambda f: f.truncate("/api/generate", times=99), 4, "cut off"),
    (
        "ps-html",
        lambda f: f.fail("/api/ps", 200, raw_body=b"<html>", times=99),
        4,
        "could not verify",
    ),
    (
        "ps-models-object",
        lambda f: f.fail("/api/ps", 200, raw_body=b'{"models":{}}', times=99),
        4,
        "could not verify",
    ),
    (
        "ps-size-string",
        lambda f: f.fail("/api/ps", 200, raw_body=_ps_entry(size="big"), times=99),
        4,
        "could not verify",
    ),
    (
        "ps-expiry-garbled",
        lambda f: f.fail("/api/ps", 200, raw_body=_ps_entry(expires_at="soon"), times=99),
        4,
        "could not verify",
    ),
    ("ps-truncated", lambda f: f.truncate("/api/ps", times=99), 4, "could not verify"),
]


@pytest.mark.parametrize(("fault", "status", "words"), [case[1:] for case in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_a_malformed_or_truncated_answer_ends_in_3_or_4_with_one_clear_line(
    fake: FakeOllama, preloader: Preloader, fault: Callable[[FakeOllama], None], status: int, words: str
) -> None:
    fake.add_model("m")
    fault(fake)
    result = preloader.run(**settings(fake, "m", OLLAMA_PRELOAD_WAIT_TIMEOUT="2", OLLAMA_PRELOAD_ATTEMPTS="2"))
    assert_clean_end(result, status)
    if preloader is PYTHON:
        lines = [
            line for line in result.stdout.splitlines() if words in line and ("error" in line or "failed:" in line)
        ]
        assert len(lines) == 1, result.stdout


def test_a_complete_answer_that_is_not_json_is_not_retried(fake: FakeOllama, preloader: Preloader) -> None:
    fake.add_model("m")
    fake.fail("/api/generate", 200, raw_body=b"<html>", times=99)
    result = preloader.run(**settings(fake, "m", OLLAMA_PRELOAD_ATTEMPTS="3"))
    assert_clean_end(result, 4)
    assert len(fake.requests_to("/api/generate")) == 1


def test_an_answer_cut_off_once_is_retried_like_a_reset(fake: FakeOllama, preloader: Preloader) -> None:
    fake.add_model("m")
    fake.truncate("/api/generate", times=1)
    result = preloader.run(**settings(fake, "m", OLLAMA_PRELOAD_ATTEMPTS="3"))
    assert_clean_end(result, 0)
    assert len(fake.requests_to("/api/generate")) == 2


# --- 2. OLLAMA_HOST ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "http://user:{secret}@127.0.0.1:{port}",
        "http://{secret}@127.0.0.1:{port}",
        "user:{secret}@127.0.0.1:{port}",
        "ftp://127.0.0.1:{port}",
        "unix:///run/ollama.sock",
    ],
)
def test_a_host_ollama_would_reject_or_that_carries_credentials_is_exit_2_and_never_shown(
    fake: FakeOllama, preloader: Preloader, host: str
) -> None:
    fake.add_model("m")
    value = host.format(secret=SECRET, port=fake.port)
    result = preloader.run(**{**settings(fake, "m"), "OLLAMA_HOST": value})
    assert_clean_end(result, 2)
    assert fake.requests == []
    assert SECRET not in result.stdout + result.stderr


# --- 3. proxies --------------------------------------------------------------------------------------------


class RecordingProxy:
    """A loopback 'proxy' that records each request's head and answers 502: it proves who was sent to it."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.05)
        self.port = self._sock.getsockname()[1]
        self.heads: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def url(self, credentials: str = "") -> str:
        return f"http://{credentials}127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                conn.settimeout(2)
                head = b""
                try:
                    while b"\r\n\r\n" not in head and len(head) < 65536:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        head += chunk
                    self.heads.append(head.decode("latin-1"))
                    conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                except OSError:
                    self.heads.append(head.decode("latin-1"))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()


@pytest.fixture
def proxy() -> Iterator[RecordingProxy]:
    recorder = RecordingProxy()
    try:
        yield recorder
    finally:
        recorder.stop()


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "HTTPS_PROXY"])
@pytest.mark.parametrize("target", ["127.0.0.1", "localhost"])
def test_loopback_targets_never_go_through_a_proxy_whatever_the_variable(
    fake: FakeOllama, preloader: Preloader, proxy: RecordingProxy, variable: str, target: str
) -> None:
    fake.add_model("m")
    env = settings(fake, "m", **{variable: proxy.url(f"user:{SECRET}@")})
    env["OLLAMA_HOST"] = f"http://{target}:{fake.port}"
    result = preloader.run(**env)
    assert_clean_end(result, 0)
    assert proxy.heads == []
    assert SECRET not in result.stdout + result.stderr


def test_a_remote_target_goes_through_http_proxy_and_its_password_is_never_printed(
    preloader: Preloader, proxy: RecordingProxy
) -> None:
    env = {
        "OLLAMA_HOST": "http://ollama.invalid:11434",
        "OLLAMA_PRELOAD_MODELS": "m",
        "OLLAMA_PRELOAD_WAIT_TIMEOUT": "1",
        "http_proxy": proxy.url(f"user:{SECRET}@"),
    }
    result = preloader.run(**env)
    assert_clean_end(result, 3)
    assert proxy.heads and proxy.heads[0].startswith("GET http://ollama.invalid:11434/api/version ")
    assert "proxy-authorization: basic" in proxy.heads[0].lower()
    assert SECRET not in result.stdout + result.stderr


# --- 4. values the server would refuse ---------------------------------------------------------------------

REFUSED_UP_FRONT = {
    "keep-alive-go-overflow": {"OLLAMA_PRELOAD_KEEP_ALIVE": "9999999999h"},
    "keep-alive-seconds-overflow": {"OLLAMA_PRELOAD_KEEP_ALIVE": "9223372037"},
    "entry-keep-alive-overflow": {"OLLAMA_PRELOAD_MODELS": "m?keep_alive=2562048h"},
    "int-option-text": {"OLLAMA_PRELOAD_MODELS": "m?num_ctx=8k"},
    "int-option-fraction": {"OLLAMA_PRELOAD_MODELS": "m?num_ctx=1.5"},
    "float-option-text": {"OLLAMA_PRELOAD_MODELS": "m?temperature=hot"},
    "bool-option-number": {"OLLAMA_PRELOAD_MODELS": "m?use_mmap=1"},
    "think-unknown": {"OLLAMA_PRELOAD_MODELS": "m?think=maybe"},
    "timeout-exponent": {"OLLAMA_PRELOAD_WARM_TIMEOUT": "1e3"},
    "timeout-tiny": {"OLLAMA_PRELOAD_WAIT_TIMEOUT": "0.0001"},
    "timeout-nanosecond": {"OLLAMA_PRELOAD_WAIT_TIMEOUT": "1ns"},
    "integer-fullwidth": {"OLLAMA_PRELOAD_ATTEMPTS": "\uff12"},
    "integer-arabic-indic": {"OLLAMA_PRELOAD_ATTEMPTS": "\u0662"},
    "integer-underscore": {"OLLAMA_PRELOAD_ATTEMPTS": "1_0"},
    "integer-exponent": {"OLLAMA_PRELOAD_NUM_PREDICT": "1e0"},
}


@pytest.mark.parametrize("extra", REFUSED_UP_FRONT.values(), ids=REFUSED_UP_FRONT.keys())
def test_a_value_the_server_would_refuse_is_refused_up_front_with_nothing_sent(
    fake: FakeOllama, preloader: Preloader, extra: dict[str, str]
) -> None:
    fake.add_model("m")
    result = preloader.run(**{**settings(fake, "m"), **extra})
    assert_clean_end(result, 2)
    assert fake.requests == []


@pytest.mark.parametrize(("value", "attempts"), [("+2", "2"), (" 2 ", "2")])
def test_integers_with_a_plus_sign_or_spaces_are_read_the_same_by_both(
    fake: FakeOllama, preloader: Preloader, value: str, attempts: str
) -> None:
    fake.add_model("m")
    fake.fail("/api/generate", 503, times=5)
    result = preloader.run(**settings(fake, "m", OLLAMA_PRELOAD_ATTEMPTS=value))
    assert_clean_end(result, 4)
    assert len(fake.requests_to("/api/generate")) == int(attempts)


@pytest.mark.parametrize("key", ["caf\u00e9-" + SECRET, "\U0001f511-" + SECRET, SECRET + "\u00a0"])
def test_an_api_key_an_http_header_cannot_carry_is_exit_2_and_never_shown(
    fake: FakeOllama, preloader: Preloader, key: str
) -> None:
    fake.add_model("m")
    result = run_bytes(preloader, **settings(fake, "m", OLLAMA_API_KEY=key))
    output = (result.stdout + result.stderr).decode("utf-8", "replace")
    assert result.returncode == 2, output
    assert fake.requests == [] and SECRET not in output and "Traceback" not in output


# --- 5. resident means loaded and not expired ------------------------------------------------------------


def test_a_model_that_expired_by_the_time_it_is_checked_is_not_resident(fake: FakeOllama, preloader: Preloader) -> None:
    fake.add_model("m")
    past = _ps_entry(expires_at="2020-01-01T00:00:00Z")
    fake.fail("/api/ps", 200, raw_body=past, times=99)
    result = preloader.run(**settings(fake, "m", OLLAMA_PRELOAD_KEEP_ALIVE="5m"))
    assert_clean_end(result, 4)
    if preloader is PYTHON:
        assert "keep-alive (5m) ran out" in result.stdout


# --- 6. /api/ps failing is "could not verify" --------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        lambda f: f.fail("/api/ps", 500, "boom", times=99),
        lambda f: f.fail("/api/ps", 503, times=99),
        lambda f: f.reset_connection("/api/ps", times=99),
    ],
    ids=["500", "503", "reset"],
)
def test_a_failing_ps_after_retries_is_could_not_verify_exit_4(
    fake: FakeOllama, preloader: Preloader, fault: Callable[[FakeOllama], None]
) -> None:
    fake.add_model("m")
    fault(fake)
    result = preloader.run(**settings(fake, "m"))
    assert_clean_end(result, 4)
    assert "verif" in result.stdout.lower()  # "could not verify" (Python) / "not verified" (bash): never "evicted"
    assert "evicted" not in result.stdout.lower() and "unloaded it" not in result.stdout
    if preloader is PYTHON:
        assert len([line for line in result.stdout.splitlines() if "could not verify" in line]) == 1


def test_a_ps_that_recovers_within_its_retries_verifies_normally(fake: FakeOllama, preloader: Preloader) -> None:
    fake.add_model("m")
    fake.fail("/api/ps", 503, times=1)
    assert_clean_end(preloader.run(**settings(fake, "m")), 0)


# --- 7. flags ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "wire"), [(("--keep-alive", "-1s"), "-1s"), (("--keep-alive=-1",), -1), (("--keep-alive", "-1"), -1)]
)
def test_flag_values_beginning_with_a_dash_reach_the_server(
    fake: FakeOllama, args: tuple[str, ...], wire: object
) -> None:
    fake.add_model("m")
    result = PYTHON.run(*args, **settings(fake, "m"))
    assert_clean_end(result, 0)
    assert [body["keep_alive"] for body in bodies(fake, "/api/generate")] == [wire]


@pytest.mark.parametrize(
    "args", [("--api-kee", SECRET), ("--api-key", SECRET, "--modles", "x"), (f"--api-k={SECRET}",), ("m", SECRET)]
)
def test_a_mistyped_flag_never_echoes_a_value_and_sends_nothing(fake: FakeOllama, args: tuple[str, ...]) -> None:
    fake.add_model("m")
    result = PYTHON.run(*args, **settings(fake, "m"))
    assert_clean_end(result, 2)
    assert fake.requests == [] and SECRET not in result.stdout + result.stderr


# --- 8. the report path ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda tmp: tmp / "missing" / "report.json",
        lambda tmp: tmp,
        lambda tmp: Path("/proc/report.json"),
    ],
    ids=["missing-directory", "a-directory", "unwritable-directory"],
)
def test_a_report_path_that_cannot_be_written_is_exit_2_before_anything_is_sent(
    fake: FakeOllama, tmp_path: Path, make: Callable[[Path], Path]
) -> None:
    fake.add_model("m")
    result = PYTHON.run(**settings(fake, "m", OLLAMA_PRELOAD_REPORT=str(make(tmp_path))))
    assert_clean_end(result, 2)
    assert fake.requests == []
    assert len([line for line in result.stdout.splitlines() if "OLLAMA_PRELOAD_REPORT" in line]) == 1


def test_a_report_to_a_fifo_nobody_reads_does_not_block_the_run(fake: FakeOllama, tmp_path: Path) -> None:
    fake.add_model("m")
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    result = PYTHON.run(timeout=30, **settings(fake, "m", OLLAMA_PRELOAD_REPORT=str(fifo)))
    assert_clean_end(result, 0)
    assert "nobody is reading" in result.stdout and fifo.is_fifo()


@pytest.mark.parametrize("path", ["/dev/null", "/dev/stdout"])
def test_a_report_to_a_device_is_written_in_place(fake: FakeOllama, path: str) -> None:
    fake.add_model("m")
    result = PYTHON.run(**settings(fake, "m", OLLAMA_PRELOAD_REPORT=path))
    assert_clean_end(result, 0)
    assert Path(path).exists()
    if path == "/dev/stdout":
        report = json.loads(result.stdout[result.stdout.index("{\n") :])
        assert report["exit_status"] == 0


def test_a_regular_report_file_is_replaced_atomically(fake: FakeOllama, tmp_path: Path) -> None:
    fake.add_model("m")
    report = tmp_path / "report.json"
    report.write_text("old\n")
    inode = report.stat().st_ino
    result = PYTHON.run(**settings(fake, "m", OLLAMA_PRELOAD_REPORT=str(report)))
    assert_clean_end(result, 0)
    assert report.stat().st_ino != inode and json.loads(report.read_text())["exit_status"] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


# --- 9. valid UTF-8 out, whatever comes in ----------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b'{"error":"bad \\ud800 surrogate"}', b'{"error":"bad \xff\xfe bytes"}', b"\xff\xfe not even json \xc3"],
    ids=["lone-surrogate", "invalid-utf8-in-json", "invalid-utf8-raw"],
)
def test_a_server_error_text_with_invalid_utf8_never_makes_the_output_invalid(
    fake: FakeOllama, preloader: Preloader, body: bytes
) -> None:
    fake.add_model("m")
    fake.fail("/api/generate", 400, raw_body=body, times=99)
    result = run_bytes(preloader, **settings(fake, "m"))
    assert result.returncode == 4, result.stdout
    result.stdout.decode("utf-8")  # strict: raises on invalid UTF-8


@pytest.mark.parametrize("body", [b'{"error":"bad \\ud800 surrogate"}', b'{"error":"bad \xff bytes"}'])
def test_json_logs_stay_parseable_utf8_whatever_the_server_said(fake: FakeOllama, body: bytes) -> None:
    fake.add_model("m")
    fake.fail("/api/generate", 400, raw_body=body, times=99)
    result = run_bytes(PYTHON, **settings(fake, "m", OLLAMA_PRELOAD_LOG_FORMAT="json"))
    assert result.returncode == 4
    records = [json.loads(line) for line in result.stdout.decode("utf-8").splitlines()]
    assert records[-1]["report"]["exit_status"] == 4
