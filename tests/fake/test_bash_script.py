"""The bash fallback, scripts/preload_models.sh, run as a subprocess against the fake Ollama.

It must behave like the Python package: same variables, same requests, same log lines, same exit statuses.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.fake.conftest import REPO, clean_env
from tests.support.fake_ollama import FakeOllama

SCRIPT = REPO / "scripts" / "preload_models.sh"

pytestmark = pytest.mark.skipif(
    shutil.which("bash") is None or shutil.which("curl") is None,
    reason="the bash fallback needs bash and curl on PATH (apt-get install curl)",
)


def settings(fake: FakeOllama, models: str, **extra: str) -> dict[str, str]:
    return {"OLLAMA_HOST": fake.url, "OLLAMA_PRELOAD_MODELS": models, "OLLAMA_PRELOAD_WAIT_TIMEOUT": "5", **extra}


def run_script(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args], env=clean_env(**env), cwd="/", capture_output=True, text=True, timeout=timeout
    )


def bodies(fake: FakeOllama, path: str) -> list[dict]:
    return [request.body for request in fake.requests_to(path)]


def bash_functions(snippet: str, **env: str) -> str:
    """Source the script (which must not run) and run `snippet` with its functions."""
    source = f"source {SCRIPT}\nset +e\n{snippet}\n"
    result = subprocess.run(["bash", "-c", source], env=clean_env(**env), capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout


# --- structure (shellcheck runs in tests/test_static_checks.py) ------------------------------------------


def test_sourcing_the_script_defines_its_functions_without_running_anything() -> None:
    steps = ["load_config", "wait_for_server", "warm_model", "verify_residency", "print_summary"]
    out = bash_functions(f"declare -F {' '.join(steps)}; echo sourced")
    assert out.split() == [*steps, "sourced"]


# --- warming -------------------------------------------------------------------------------------------


def test_a_completion_model_is_warmed_resident_and_exits_0(fake: FakeOllama) -> None:
    fake.add_model("smollm2:135m")
    result = run_script(**settings(fake, "smollm2:135m", OLLAMA_PRELOAD_KEEP_ALIVE="-1"))
    assert result.returncode == 0, result.stdout + result.stderr
    (body,) = bodies(fake, "/api/generate")
    assert body == {
        "model": "smollm2:135m",
        "prompt": "Hi",
        "stream": False,
        "options": {"num_predict": 1},
        "keep_alive": -1,
    }
    assert "smollm2:135m" in fake.loaded()
    assert "preloader: server ready after" in result.stdout and "(Ollama 0.11.4)" in result.stdout
    assert "smollm2:135m: warmed in" in result.stdout and "(generate" in result.stdout
    assert "smollm2:135m: resident (100% CPU, expires forever)" in result.stdout
    assert result.stdout.rstrip().endswith("preloader: 1 of 1 model(s) warmed and resident (exit 0)")


def test_an_embedding_model_is_warmed_through_embed_and_never_sent_to_generate(fake: FakeOllama) -> None:
    fake.add_model("nomic-embed-text", embedding=True)
    fake.add_model("llama3.2")
    result = run_script(**settings(fake, "nomic-embed-text llama3.2", OLLAMA_PRELOAD_KEEP_ALIVE="30m"))
    assert result.returncode == 0, result.stdout
    assert [b["model"] for b in bodies(fake, "/api/generate")] == ["llama3.2"]
    (embed,) = bodies(fake, "/api/embed")
    assert embed["model"] == "nomic-embed-text" and embed["input"] and embed["keep_alive"] == "30m"
    assert "nomic-embed-text: warmed in" in result.stdout and "(embed" in result.stdout


def test_on_servers_without_capabilities_the_pooling_type_marks_an_embedding_model() -> None:
    with FakeOllama(legacy_show=True) as fake:
        fake.add_model("all-minilm", embedding=True)
        result = run_script(**settings(fake, "all-minilm"))
        assert result.returncode == 0, result.stdout
        assert bodies(fake, "/api/generate") == [] and len(bodies(fake, "/api/embed")) == 1


def test_entry_options_reach_the_server_typed_and_cloud_models_are_skipped(fake: FakeOllama) -> None:
    fake.add_model("qwen3:0.6b")
    entry = "qwen3:0.6b?num_ctx=8192&temperature=0.5&use_mmap=false&keep_alive=1h&prompt=Say+%22hi%22%5C&think=false"
    result = run_script(**settings(fake, f"gpt-oss:120b-cloud,{entry}", OLLAMA_PRELOAD_NUM_PREDICT="3"))
    assert result.returncode == 0, result.stdout
    (body,) = bodies(fake, "/api/generate")
    assert body["options"] == {"num_predict": 3, "num_ctx": 8192, "temperature": 0.5, "use_mmap": False}
    assert (body["keep_alive"], body["prompt"], body["think"]) == ("1h", 'Say "hi"\\', False)
    assert all(r.body is None or r.body.get("model") != "gpt-oss:120b-cloud" for r in fake.requests)
    assert "gpt-oss:120b-cloud: skipped: cloud model" in result.stdout


def test_a_plain_integer_keep_alive_is_sent_as_a_json_number(fake: FakeOllama) -> None:
    fake.add_model("m")
    assert run_script(**settings(fake, "m", OLLAMA_PRELOAD_KEEP_ALIVE="3600")).returncode == 0
    (body,) = bodies(fake, "/api/generate")
    assert body["keep_alive"] == 3600 and isinstance(body["keep_alive"], int)


# --- missing models and pulling --------------------------------------------------------------------------


def test_a_missing_model_fails_with_exit_4_and_the_pull_hint(fake: FakeOllama) -> None:
    fake.add_model("present")
    result = run_script(**settings(fake, "present,absent"))
    assert result.returncode == 4
    assert "absent: failed: not found on the server" in result.stdout
    assert "ollama pull absent" in result.stdout and "OLLAMA_PRELOAD_PULL=missing" in result.stdout
    assert [b["model"] for b in bodies(fake, "/api/generate")] == ["present"]
    assert bodies(fake, "/api/pull") == []


def test_pull_missing_pulls_then_warms_a_model_the_server_lacks() -> None:
    with FakeOllama(pullable=["tinyllama"]) as fake:
        result = run_script(**settings(fake, "tinyllama", OLLAMA_PRELOAD_PULL="missing"))
        assert result.returncode == 0, result.stdout
        assert [b["model"] for b in bodies(fake, "/api/pull")] == ["tinyllama"]
        assert "tinyllama: pulled in" in result.stdout and "tinyllama:latest" in fake.loaded()


def test_pull_missing_reports_the_servers_error_text_when_the_pull_fails(fake: FakeOllama) -> None:
    result = run_script(**settings(fake, "nosuchmodel", OLLAMA_PRELOAD_PULL="missing"))
    assert result.returncode == 4
    assert "nosuchmodel: failed: pull model manifest: file does not exist" in result.stdout


# --- waiting for the server ------------------------------------------------------------------------------


def test_a_server_that_starts_late_is_waited_for() -> None:
    with FakeOllama(start_delay=0.6) as fake:
        fake.add_model("m")
        result = run_script(**settings(fake, "m"))
        assert result.returncode == 0, result.stdout
        assert "server ready after" in result.stdout


def test_a_server_that_never_answers_exits_3_at_the_deadline() -> None:
    with FakeOllama(start_delay=60) as fake:
        started = time.monotonic()
        result = run_script(**settings(fake, "m", OLLAMA_PRELOAD_WAIT_TIMEOUT="1"))
        elapsed = time.monotonic() - started
    assert result.returncode == 3
    assert "preloader: error: the server at" in result.stdout and "did not answer within 1.00 s" in result.stdout
    assert "connection refused" in result.stdout and "OLLAMA_PRELOAD_WAIT_TIMEOUT" in result.stdout
    assert 1 <= elapsed < 3


def test_a_connected_but_silent_server_does_not_stall_the_wait_past_its_deadline() -> None:
    with FakeOllama(silent_for=30) as fake:
        started = time.monotonic()
        result = run_script(**settings(fake, "m", OLLAMA_PRELOAD_WAIT_TIMEOUT="1.2"))
        elapsed = time.monotonic() - started
    assert result.returncode == 3, result.stdout
    assert "did not answer within 1.20 s" in result.stdout
    assert elapsed < 1.2 + 1  # never a whole per-attempt read timeout, let alone the silent period


# --- retries ---------------------------------------------------------------------------------------------


def test_a_503_is_retried_and_then_succeeds(fake: FakeOllama) -> None:
    fake.add_model("m")
    fake.fail("/api/generate", 503, times=1)
    result = run_script(**settings(fake, "m"))
    assert result.returncode == 0, result.stdout
    assert len(bodies(fake, "/api/generate")) == 2
    assert "m: warning: warm attempt 1 failed (server busy" in result.stdout and "retrying in 0.50 s" in result.stdout


def test_a_connection_reset_mid_request_is_retried(fake: FakeOllama) -> None:
    fake.add_model("m")
    fake.reset_connection("/api/generate")
    result = run_script(**settings(fake, "m"))
    assert result.returncode == 0, result.stdout
    assert len(bodies(fake, "/api/generate")) == 2


def test_a_400_is_not_retried(fake: FakeOllama) -> None:
    fake.add_model("m")
    fake.fail("/api/generate", 400, "invalid options", times=3)
    result = run_script(**settings(fake, "m"))
    assert result.returncode == 4
    assert len(bodies(fake, "/api/generate")) == 1
    assert "m: failed: invalid options (HTTP 400)" in result.stdout


def test_a_load_slower_than_the_warm_timeout_fails_with_a_hint(fake: FakeOllama) -> None:
    fake.add_model("big", load_delay=5)
    result = run_script(**settings(fake, "big", OLLAMA_PRELOAD_WARM_TIMEOUT="0.5"))
    assert result.returncode == 4
    assert "big: failed: no answer within 0.50 s" in result.stdout and "OLLAMA_PRELOAD_WARM_TIMEOUT" in result.stdout


# --- residency, best effort, internal errors -----------------------------------------------------------


def test_a_model_evicted_by_a_later_one_exits_4_and_the_message_says_why() -> None:
    with FakeOllama(max_loaded=1) as fake:
        fake.add_model("first")
        fake.add_model("second")
        result = run_script(**settings(fake, "first,second"))
    assert result.returncode == 4
    assert "first: not resident:" in result.stdout and "OLLAMA_MAX_LOADED_MODELS" in result.stdout
    assert "This run warmed 2 model(s) (first, second)" in result.stdout
    assert "second: resident" in result.stdout


def test_best_effort_logs_the_failure_but_exits_0(fake: FakeOllama) -> None:
    result = run_script(**settings(fake, "absent", OLLAMA_PRELOAD_BEST_EFFORT="true"))
    assert result.returncode == 0
    assert "absent: failed:" in result.stdout and "(best effort: reported as success)" in result.stdout


def test_best_effort_turns_an_unreachable_server_into_exit_0() -> None:
    with FakeOllama(start_delay=60) as fake:
        result = run_script("--best-effort", **settings(fake, "m", OLLAMA_PRELOAD_WAIT_TIMEOUT="0.3"))
    assert result.returncode == 0 and "did not answer" in result.stdout


def test_a_failure_to_list_loaded_models_is_an_internal_error_exit_1(fake: FakeOllama) -> None:
    fake.add_model("m")
    fake.fail("/api/ps", 500, "boom", times=5)
    result = run_script(**settings(fake, "m"))
    assert result.returncode == 1
    assert "preloader: error: internal error:" in result.stdout and "(exit 1)" in result.stdout


def test_json_logs_are_one_object_per_line_summary_included(fake: FakeOllama) -> None:
    fake.add_model("m")
    result = run_script(**settings(fake, "m,absent", OLLAMA_PRELOAD_LOG_FORMAT="json"))
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert {"start", "wait", "ready", "warming", "warmed", "failed", "resident", "summary"} <= {
        record["event"] for record in records
    }
    summary = records[-1]["report"]
    assert summary["exit_status"] == 4 == result.returncode
    assert [(row["model"], row["outcome"]) for row in summary["models"]] == [("m", "warmed"), ("absent", "failed")]


def test_the_report_file_holds_every_model_with_its_timings(fake: FakeOllama, tmp_path: Path) -> None:
    fake.add_model("m", load_delay=0.3)
    report = tmp_path / "out" / "report.json"
    assert run_script(**settings(fake, "m", OLLAMA_PRELOAD_REPORT=str(report))).returncode == 0
    data = json.loads(report.read_text())
    (row,) = data["models"]
    assert (row["model"], row["kind"], row["outcome"], row["resident"]) == ("m", "generate", "warmed", True)
    assert row["seconds"] >= 0.3 and row["load_seconds"] >= 0.3
    assert data["server_version"] == fake.version and data["exit_status"] == 0


# --- secrets ---------------------------------------------------------------------------------------------


def _children_command_lines(pid: int) -> list[bytes]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append((entry / "cmdline").read_bytes() + b"\0" + (entry / "environ").read_bytes())
        except (OSError, ValueError, IndexError):
            continue
    return found


def test_the_api_key_is_sent_as_a_bearer_header_but_never_printed_nor_in_curls_arguments(fake: FakeOllama) -> None:
    fake.add_model("slow", load_delay=1.0)
    secret = "sk-test-0123456789"
    process = subprocess.Popen(
        ["bash", str(SCRIPT), "--verbose"],
        env=clean_env(**settings(fake, "slow", OLLAMA_API_KEY=secret)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.6)  # the warm request is in flight: curl is running
    children = _children_command_lines(process.pid)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stdout
    assert any(b"curl" in child for child in children)
    assert not any(secret.encode() in child for child in children)
    assert fake.requests and all(r.header("Authorization") == f"Bearer {secret}" for r in fake.requests)
    assert secret not in stdout + stderr


def test_without_an_api_key_no_authorization_header_is_sent(fake: FakeOllama) -> None:
    fake.add_model("m")
    assert run_script(**settings(fake, "m")).returncode == 0
    assert all(r.header("Authorization") is None for r in fake.requests)


# --- signals ---------------------------------------------------------------------------------------------


def test_sigterm_stops_the_run_with_143_and_says_which_models_were_done(fake: FakeOllama) -> None:
    fake.add_model("quick")
    fake.add_model("slow", load_delay=30)
    process = subprocess.Popen(
        ["bash", str(SCRIPT)], env=clean_env(**settings(fake, "quick,slow")), stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("slow: warming"):
            break
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    output = process.stdout.read()
    assert process.wait(timeout=10) == 143
    assert time.monotonic() - started < 3  # the 30 s load in flight is abandoned, not waited for
    assert "preloader: warning: interrupted by SIGTERM; done: quick" in output
    assert "not ready: slow; interrupted by SIGTERM (exit 143)" in output


# --- invalid configuration: exit 2 and not a single request ----------------------------------------------

BAD_CONFIGURATIONS = [
    {"OLLAMA_PRELOAD_MODELS": ""},
    {"OLLAMA_PRELOAD_MODELS": " ,, "},
    {"OLLAMA_PRELOAD_MODELS": "", "OLLAMA_MODELS": "/root/.ollama/models"},
    {"OLLAMA_PRELOAD_MODELS": "bad!name"},
    {"OLLAMA_PRELOAD_MODELS": 'x"},{"model":"y'},
    {"OLLAMA_PRELOAD_MODELS": "$(touch${IFS}/tmp/preloader-pwned)"},
    {"OLLAMA_PRELOAD_MODELS": "my.ns/model"},
    {"OLLAMA_PRELOAD_MODELS": "m,m:latest"},
    {"OLLAMA_PRELOAD_MODELS": "m?num_ctx"},
    {"OLLAMA_PRELOAD_MODELS": "m?keep_alive=1d"},
    {"OLLAMA_PRELOAD_MODELS": "m?think=7"},
    {"OLLAMA_PRELOAD_NUM_PREDICT": "0"},
    {"OLLAMA_PRELOAD_NUM_PREDICT": "9"},
    {"OLLAMA_PRELOAD_NUM_PREDICT": "abc"},
    {"OLLAMA_PRELOAD_KEEP_ALIVE": "forever"},
    {"OLLAMA_PRELOAD_KEEP_ALIVE": "500ms"},
    {"OLLAMA_PRELOAD_WAIT_TIMEOUT": "soon"},
    {"OLLAMA_PRELOAD_WARM_TIMEOUT": "-1m"},
    {"OLLAMA_PRELOAD_PULL": "always"},
    {"OLLAMA_PRELOAD_BEST_EFFORT": "maybe"},
    {"OLLAMA_PRELOAD_LOG_FORMAT": "xml"},
    {"OLLAMA_PRELOAD_ATTEMPTS": "0"},
    {"OLLAMA_API_KEY": "sk-secret\nX-Injected: 1"},
]


@pytest.mark.parametrize("bad", BAD_CONFIGURATIONS, ids=lambda bad: ",".join(f"{k}={v!r}" for k, v in bad.items()))
def test_invalid_configuration_exits_2_before_sending_anything(fake: FakeOllama, bad: dict[str, str]) -> None:
    fake.add_model("m")
    result = run_script(**{**settings(fake, "m"), **bad})
    assert result.returncode == 2, result.stdout
    assert fake.requests == []
    lines = result.stdout.splitlines()
    assert lines[-1] == "preloader: error: invalid configuration; nothing was sent to the server (exit 2)"
    assert any(key in line for line in lines for key in bad), result.stdout
    assert not Path("/tmp/preloader-pwned").exists()
    assert "sk-secret" not in result.stdout + result.stderr


def test_an_invalid_flag_value_exits_2_naming_the_flag(fake: FakeOllama) -> None:
    result = run_script("--pull", "sometimes", **settings(fake, "m"))
    assert result.returncode == 2 and "preloader: error: --pull='sometimes' is invalid" in result.stdout
    assert fake.requests == []


def test_invalid_configuration_in_json_mode_is_still_json(fake: FakeOllama) -> None:
    result = run_script(**settings(fake, "m", OLLAMA_PRELOAD_LOG_FORMAT="json", OLLAMA_PRELOAD_NUM_PREDICT="0"))
    assert result.returncode == 2
    assert [json.loads(line)["event"] for line in result.stdout.splitlines()] == ["config", "exit"]


def test_a_path_in_ollama_models_is_refused_with_a_message_that_says_why(fake: FakeOllama) -> None:
    result = run_script(**settings(fake, "", OLLAMA_MODELS="/root/.ollama/models"))
    assert result.returncode == 2 and fake.requests == []
    assert "preloader: error: OLLAMA_MODELS='/root/.ollama/models' looks like a path" in result.stdout
    assert "models-directory variable" in result.stdout


def test_ollama_models_is_the_list_when_ollama_preload_models_is_empty(fake: FakeOllama) -> None:
    fake.add_model("m")
    result = run_script(**settings(fake, "", OLLAMA_MODELS="m"))
    assert result.returncode == 0, result.stdout
    assert [b["model"] for b in bodies(fake, "/api/generate")] == ["m"]


# --- parity with the package's parsing -------------------------------------------------------------------

HOSTS = [
    "",
    "1.2.3.4",
    ":1234",
    "example.com:1234",
    ":66000",
    "[::1]",
    "[::]",
    "::1",
    "[::1]:1337",
    " 1.2.3.4 ",
    '"1.2.3.4"',
    "'1.2.3.4'",
    "http://1.2.3.4",
    "https://1.2.3.4",
    "https://example.com/ollama",
    "ollama.com",
    "0.0.0.0",
    "ollama:11434",
    "http://ollama",
    "[0001:002:003:0004::1]",
    "example.com:abc",
    "[::]:8080",
]


def test_ollama_host_is_parsed_exactly_like_the_package_parses_it() -> None:
    from preloader.hosts import parse_host

    show = 'printf \'%s %s\\n\' "$HOST_URL" "$HOST_BASE_URL"'
    snippet = "\n".join(f"parse_host {_bash_quote(h)}; {show}" for h in HOSTS)
    got = bash_functions(snippet).splitlines()
    assert got == [f"{parse_host(h).url} {parse_host(h).base_url}" for h in HOSTS]


def test_json_quote_keeps_any_value_inside_its_json_string() -> None:
    hostile = ['a"b', "back\\slash", "new\nline", "tab\tbell\x07", '"},{"x":1', "$(id)`id`", "é"]
    snippet = "\n".join(f"json_quote {_bash_quote(v)}; printf '%s\\n' \"$REPLY\"" for v in hostile)
    assert [json.loads(line) for line in bash_functions(snippet).splitlines()] == hostile


def _bash_quote(text: str) -> str:
    return (
        "$'"
        + "".join(c if c.isalnum() or c in " .:/[]-_" else f"\\x{ord(c):02x}" if ord(c) < 128 else c for c in text)
        + "'"
    )


@pytest.fixture(autouse=True)
def _no_stray_marker() -> None:
    marker = Path("/tmp/preloader-pwned")
    if marker.exists():
        os.unlink(marker)
