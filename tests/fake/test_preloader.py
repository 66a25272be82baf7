"""The preloader's behaviour against a fake Ollama that behaves like the reference, as a behaviour suite.

Every test taking the `preloader` fixture runs twice, once against the Python CLI (`python -m preloader`) and
once against the bash fallback (`fallback/preload_models.sh`). Both must send the same requests, exit with the
same statuses and name the model, its state and the status in their logs; the exact wording is the package's
own and is checked for it alone (`if preloader is PYTHON`). What the bash fallback does not implement it must
refuse with exit 2, a hint to the Python CLI and not a single request: those scenarios check that instead.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from preloader.wait import ATTEMPT_READ_TIMEOUT
from testkit.fake_ollama import FakeOllama
from tests.fake.conftest import BASH, PYTHON, Preloader, bodies, settings

PWNED = Path("/tmp/preloader-pwned")  # created only if a model name were ever run as a shell command


@pytest.fixture(autouse=True)
def _no_stray_marker() -> Iterator[None]:
    PWNED.unlink(missing_ok=True)
    yield
    PWNED.unlink(missing_ok=True)


def assert_bash_refused(result: subprocess.CompletedProcess[str], fake: FakeOllama, setting: str) -> None:
    """The bash fallback's answer to a feature it lacks: exit 2 naming the setting, a pointer to the CLI, no request."""
    assert result.returncode == 2, result.stdout
    assert fake.requests == []
    assert setting in result.stdout and "python -m preloader" in result.stdout
    assert result.stdout.rstrip().endswith("(exit 2)")


# --- warming -------------------------------------------------------------------------------------------


def test_a_completion_model_is_warmed_with_a_one_token_generation_is_resident_and_exits_0(
    fake: FakeOllama, preloader: Preloader
) -> None:
    fake.add_model("smollm2:135m")
    result = preloader.run(**settings(fake, "smollm2:135m", OLLAMA_PRELOAD_KEEP_ALIVE="-1"))
    assert result.returncode == 0, result.stdout + result.stderr
    (body,) = bodies(fake, "/api/generate")
    assert body == {
        "model": "smollm2:135m",
        "prompt": "Hi",
        "stream": False,
        "options": {"num_predict": 1},
        "keep_alive": -1,
        "raw": True,  # our own prompt skips the chat template: one token to evaluate, not ten
    }
    assert isinstance(body["keep_alive"], int)
    assert "smollm2:135m" in fake.loaded()
    assert f"(Ollama {fake.version})" in result.stdout
    assert "smollm2:135m: warmed in" in result.stdout
    assert "smollm2:135m: resident (100% CPU, expires forever)" in result.stdout
    assert result.stdout.rstrip().endswith("(exit 0)")
    if preloader is PYTHON:
        assert "preloader: server ready after" in result.stdout and "(generate" in result.stdout
        assert result.stdout.rstrip().endswith("preloader: 1 of 1 model(s) warmed and resident (exit 0)")


def test_an_embedding_model_is_warmed_through_embed_and_never_sent_to_generate(
    fake: FakeOllama, preloader: Preloader
) -> None:
    fake.add_model("nomic-embed-text", embedding=True)
    fake.add_model("llama3.2")
    result = preloader.run(**settings(fake, "nomic-embed-text llama3.2", OLLAMA_PRELOAD_KEEP_ALIVE="30m"))
    assert result.returncode == 0, result.stdout
    assert [b["model"] for b in bodies(fake, "/api/generate")] == ["llama3.2"]
    (embed,) = bodies(fake, "/api/embed")
    assert embed["model"] == "nomic-embed-text" and embed["input"] and embed["keep_alive"] == "30m"
    assert "nomic-embed-text: warmed in" in result.stdout and "(embed" in result.stdout


def test_on_servers_without_capabilities_an_embedding_model_is_recognised_by_its_pooling_type(
    preloader: Preloader,
) -> None:
    with FakeOllama(legacy_show=True) as fake:
        fake.add_model("all-minilm", embedding=True)
        result = preloader.run(**settings(fake, "all-minilm"))
        assert result.returncode == 0, result.stdout
        assert bodies(fake, "/api/generate") == [] and len(bodies(fake, "/api/embed")) == 1


def test_models_are_warmed_in_the_listed_order(fake: FakeOllama, preloader: Preloader) -> None:
    for name in ("c", "a", "b"):
        fake.add_model(name)
    result = preloader.run(**settings(fake, "c,a,b"))
    assert result.returncode == 0, result.stdout
    assert [b["model"] for b in bodies(fake, "/api/generate")] == ["c", "a", "b"]


def test_load_time_options_and_keep_alive_of_an_entry_reach_the_server_typed_and_win_over_the_environment(
    fake: FakeOllama, preloader: Preloader
) -> None:
    fake.add_model("qwen3:0.6b")
    entry = "qwen3:0.6b?num_ctx=8192&use_mmap=false&keep_alive=1h"
    result = preloader.run(**settings(fake, entry, OLLAMA_PRELOAD_NUM_PREDICT="3", OLLAMA_PRELOAD_KEEP_ALIVE="-1"))
    assert result.returncode == 0, result.stdout
    (body,) = bodies(fake, "/api/generate")
    assert body["options"] == {"num_predict": 3, "num_ctx": 8192, "use_mmap": False}
    assert (body["keep_alive"], body["prompt"], body["raw"]) == ("1h", "Hi", True)
    assert fake.loaded()["qwen3:0.6b"].options.get("num_ctx") == 8192
    assert "qwen3:0.6b" in result.stdout and "resident" in result.stdout


@pytest.mark.parametrize("option", ["temperature=0.5", "prompt=Say+hi", "think=false", "stop=END"])
def test_an_entry_option_the_bash_fallback_cannot_type_is_refused_by_it(fake: FakeOllama, option: str) -> None:
    fake.add_model("m")
    result = BASH.run(**settings(fake, f"m?{option}"))
    assert_bash_refused(result, fake, "OLLAMA_PRELOAD_MODELS")
    assert option.split("=")[0] in result.stdout


# Python only: the bash fallback types only load-time options (refused above).
def test_entry_options_and_request_fields_reach_the_server_typed_and_win_over_the_environment(
    fake: FakeOllama,
) -> None:
    fake.add_model("qwen3:0.6b")
    entry = "qwen3:0.6b?num_ctx=8192&temperature=0.5&use_mmap=false&keep_alive=1h&prompt=Say+%22hi%22%5C&think=false"
    result = PYTHON.run(**settings(fake, entry, OLLAMA_PRELOAD_NUM_PREDICT="3", OLLAMA_PRELOAD_KEEP_ALIVE="-1"))
    assert result.returncode == 0, result.stdout
    (body,) = bodies(fake, "/api/generate")
    assert body["options"] == {"num_predict": 3, "num_ctx": 8192, "temperature": 0.5, "use_mmap": False}
    assert (body["keep_alive"], body["prompt"], body["think"]) == ("1h", 'Say "hi"\\', False)
    assert "raw" not in body  # the entry's own prompt goes through the chat template, as the app's will
    assert fake.loaded()["qwen3:0.6b"].options.get("num_ctx") == 8192


def test_a_plain_integer_keep_alive_is_sent_as_a_json_number(fake: FakeOllama, preloader: Preloader) -> None:
    fake.add_model("m")
    result = preloader.run(**settings(fake, "m", OLLAMA_PRELOAD_KEEP_ALIVE="3600"))
    assert result.returncode == 0, result.stdout
    (body,) = bodies(fake, "/api/generate")
    assert body["keep_alive"] == 3600 and isinstance(body["keep_alive"], int)


# Python only: the bash fallback refuses `stop` (test_an_entry_option_the_bash_fallback_cannot_type_is_refused_by_it).
def test_a_stop_sequence_option_is_sent_as_the_list_ollama_expects(fake: FakeOllama) -> None:
    fake.add_model("m")
    result = PYTHON.run(**settings(fake, "m?stop=END"))
    assert result.returncode == 0, result.stdout
    assert bodies(fake, "/api/generate")[0]["options"]["stop"] == ["END"]


def test_cloud_models_are_skipped_without_any_request(fake: FakeOllama, preloader: Preloader) -> None:
    fake.add_model("llama3.2")
    result = preloader.run(**settings(fake, "gpt-oss:120b-cloud,llama3.2"))
    assert result.returncode == 0, result.stdout
    assert [b["model"] for b in bodies(fake, "/api/generate")] == ["llama3.2"]
    assert all(r.body is None or r.body.get("model") != "gpt-oss:120b-cloud" for r in fake.requests)
    assert "gpt-oss:120b-cloud: skipped" in result.stdout


def test_concurrent_warming_sends_the_warm_requests_together_and_warms_every_model(
    fake: FakeOllama, preloader: Preloader
) -> None:
    for name in ("a", "b", "c"):
        fake.add_model(name, load_delay=1.0)
    result = preloader.run(**settings(fake, "a b c", OLLAMA_PRELOAD_CONCURRENCY="3"))
    if preloader is BASH:
        assert_bash_refused(result, fake, "OLLAMA_PRELOAD_CONCURRENCY")
        return
    assert result.returncode == 0, result.stdout
    requests = fake.requests_to("/api/generate")
    assert sorted(r.body["model"] for r in requests) == ["a", "b", "c"]
    arrivals = [r.at for r in requests]
    assert max(arrivals) - min(arrivals) < 1.0  # one at a time, each would wait for the previous 1 s load


# --- missing models and pulling --------------------------------------------------------------------------


def test_a_missing_model_fails_with_exit_4_and_the_pull_hint_and_is_never_warmed(
    fake: FakeOllama, preloader: Preloader
) -> None:
    fake.add_model("present")
    result = preloader.run(**settings(fake, "present,absent"))
    assert result.returncode == 4
    assert "absent: failed: not found on the server" in result.stdout and "ollama pull absent" in result.stdout
    assert [b["model"] for b in bodies(fake, "/api/generate")] == ["present"]
    assert bodies(fake, "/api/pull") == []
    assert "(exit 4)" in result.stdout.splitlines()[-1]
    if preloader is PYTHON:
        assert "OLLAMA_PRELOAD_PULL=missing" in result.stdout


def test_pull_missing_pulls_a_model_the_server_lacks_then_warms_it(preloader: Preloader, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    with FakeOllama(pullable=["tinyllama"]) as fake:
        fake.add_model("present")
        result = preloader.run(
            **settings(fake, "tinyllama present", OLLAMA_PRELOAD_PULL="missing", OLLAMA_PRELOAD_REPORT=str(report))
        )
        if preloader is BASH:
            assert_bash_refused(result, fake, "OLLAMA_PRELOAD_PULL")
            return
        assert result.returncode == 0, result.stdout
        assert [b["model"] for b in bodies(fake, "/api/pull")] == ["tinyllama"]
        assert "tinyllama: pulled in" in result.stdout and "tinyllama:latest" in fake.loaded()
    rows = json.loads(report.read_text())["models"]
    assert [(row["model"], row["pulled"]) for row in rows] == [("tinyllama", True), ("present", False)]


# Python only: the bash fallback refuses OLLAMA_PRELOAD_PULL=missing (checked above).
def test_pull_missing_reports_the_servers_error_when_the_pull_fails(fake: FakeOllama) -> None:
    result = PYTHON.run(**settings(fake, "nosuchmodel", OLLAMA_PRELOAD_PULL="missing"))
    assert result.returncode == 4
    assert "nosuchmodel: failed: pull model manifest: file does not exist" in result.stdout


# --- waiting for the server ------------------------------------------------------------------------------


def test_a_server_that_starts_late_is_waited_for(preloader: Preloader) -> None:
    with FakeOllama(start_delay=1.5) as fake:
        fake.add_model("m")
        result = preloader.run(**settings(fake, "m"))
        assert result.returncode == 0, result.stdout
        assert "ready" in result.stdout and [b["model"] for b in bodies(fake, "/api/generate")] == ["m"]


def test_a_server_that_never_answers_fails_with_exit_3_at_the_deadline(preloader: Preloader) -> None:
    with FakeOllama(start_delay=60) as fake:
        started = time.monotonic()
        result = preloader.run(**settings(fake, "m", OLLAMA_PRELOAD_WAIT_TIMEOUT="1.5"))
        elapsed = time.monotonic() - started
    assert result.returncode == 3
    assert "did not answer within 1.50 s" in result.stdout and "(exit 3)" in result.stdout.splitlines()[-1]
    assert "connection refused" in result.stdout and "OLLAMA_PRELOAD_WAIT_TIMEOUT" in result.stdout
    assert 1.5 <= elapsed < 1.5 + 2
    if preloader is PYTHON:
        assert "preloader: error: the server at" in result.stdout


def test_a_connected_but_silent_server_does_not_stall_the_wait_past_its_deadline(preloader: Preloader) -> None:
    with FakeOllama(silent_for=30) as fake:
        started = time.monotonic()
        result = preloader.run(**settings(fake, "m", OLLAMA_PRELOAD_WAIT_TIMEOUT="1.2"))
        elapsed = time.monotonic() - started
    assert result.returncode == 3, result.stdout
    assert "did not answer within 1.20 s" in result.stdout
    # An uncapped attempt would hang for its whole read timeout (longer than the deadline), let alone the
    # silent period; the slack below that is for interpreter start-up on a loaded machine.
    assert elapsed < ATTEMPT_READ_TIMEOUT


def test_a_server_that_is_silent_for_a_while_then_serves_is_detected(preloader: Preloader) -> None:
    with FakeOllama(silent_for=1.0) as fake:
        fake.add_model("m")
        result = preloader.run(**settings(fake, "m"))
        assert result.returncode == 0, result.stdout
        assert [b["model"] for b in bodies(fake, "/api/generate")] == ["m"]


def test_waiting_logs_a_line_every_few_seconds_not_every_attempt(preloader: Preloader) -> None:
    with FakeOllama(start_delay=60) as fake:
        result = preloader.run(**settings(fake, "m", OLLAMA_PRELOAD_WAIT_TIMEOUT="6"))
    assert result.returncode == 3
    assert result.stdout.count("still waiting") == 1


@pytest.mark.parametrize(("status", "hint"), [(401, "OLLAMA_API_KEY"), (403, "Host: localhost")])
def test_a_health_check_refused_with_4xx_fails_at_once_with_a_hint(
    fake: FakeOllama, preloader: Preloader, status: int, hint: str
) -> None:
    fake.fail("/api/version", status, "nope", times=100)
    started = time.monotonic()
    result = preloader.run(**settings(fake, "m", OLLAMA_PRELOAD_WAIT_TIMEOUT="60"))
    assert result.returncode == 3 and hint in result.stdout
    assert time.monotonic() - started < 30  # not the whole wait timeout
    assert len(fake.requests_to("/api/version")) == 1


# --- retries ---------------------------------------------------------------------------------------------


def test_a_busy_server_is_retried_until_it_accepts(fake: FakeOllama, preloader: Preloader) -> None:
    fake.add_model("m")
    fake.fail("/api/generate", 503, "server busy, please try again.  maximum pending requests exceeded", times=2)
    result = preloader.run(**settings(fake, "m"))
    assert result.returncode == 0, result.stdout
    assert len(bodies(fake, "/api/generate")) == 3
    assert result.stdout.count("retrying in") == 2 and "server busy" in result.stdout
    if preloader is PYTHON:
        assert (
            "m: warning: warm attempt 1 failed (server busy" in result.stdout and "retrying in 0.50 s" in result.stdout
        )


def test_a_connection_reset_mid_request_is_retried(fake: FakeOllama, preloader: Preloader) -> None:
    fake.add_model("m")
    fake.reset_connection("/api/generate")
    result = preloader.run(**settings(fake, "m"))
    assert result.returncode == 0, result.stdout
    assert len(bodies(fake, "/api/generate")) == 2


def test_transient_failures_give_up_after_the_configured_attempts(fake: FakeOllama, preloader: Preloader) -> None:
    fake.add_model("m")
    fake.fail("/api/generate", 500, "llama runner process has terminated: signal: killed", times=5)
    result = preloader.run(**settings(fake, "m", OLLAMA_PRELOAD_ATTEMPTS="2"))
    assert result.returncode == 4
    assert len(bodies(fake, "/api/generate")) == 2
    assert "m: failed: llama runner process has terminated: signal: killed (HTTP 500)" in result.stdout
    assert "(exit 4)" in result.stdout.splitlines()[-1]


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, "invalid options"),
        (500, "model requires more system memory (9.0 GiB) than is available (4.0 GiB)"),
    ],
)
def test_deterministic_refusals_are_not_retried(
    fake: FakeOllama, preloader: Preloader, status: int, error: str
) -> None:
    fake.add_model("m")
    fake.fail("/api/generate", status, error, times=3)
    result = preloader.run(**settings(fake, "m"))
    assert result.returncode == 4
    assert len(bodies(fake, "/api/generate")) == 1
    assert f"m: failed: {error} (HTTP {status})" in result.stdout


def test_a_load_slower_than_the_warm_timeout_fails_with_a_hint(fake: FakeOllama, preloader: Preloader) -> None:
    fake.add_model("big", load_delay=5)
    result = preloader.run(**settings(fake, "big", OLLAMA_PRELOAD_WARM_TIMEOUT="1"))
    assert result.returncode == 4
    assert "big: failed: no answer within 1.00 s" in result.stdout and "OLLAMA_PRELOAD_WARM_TIMEOUT" in result.stdout
    assert len(bodies(fake, "/api/generate")) == 1  # a timeout is not retried: a second load would be as slow
    time.sleep(0.3)  # the fake notices the hang-up on its next poll
    assert fake.cancelled_loads == ["big:latest"]  # why the timeout must be long: the load was lost


# --- residency -------------------------------------------------------------------------------------------


def test_a_model_evicted_by_a_later_one_fails_the_run_with_exit_4_and_the_message_says_why(
    preloader: Preloader,
) -> None:
    with FakeOllama(max_loaded=1) as fake:
        fake.add_model("first")
        fake.add_model("second")
        result = preloader.run(**settings(fake, "first,second"))
    assert result.returncode == 4
    assert "first: not resident:" in result.stdout and "OLLAMA_MAX_LOADED_MODELS" in result.stdout
    assert "second: resident" in result.stdout and "(exit 4)" in result.stdout.splitlines()[-1]
    assert [b["model"] for b in bodies(fake, "/api/generate")] == ["first", "second"]
    if preloader is PYTHON:
        assert "This run warmed 2 model(s) (first, second)" in result.stdout


@pytest.mark.parametrize(
    ("expires_at", "status", "phrase"),
    [
        ("2000-01-01T00:00:00Z", 4, "not resident"),  # listed, but its keep-alive ran out long ago
        ("2318-09-13T21:26:43.305574107-06:00", 0, "expires forever"),  # keep_alive -1 as Ollama writes it
        ("2999-01-01T00:00:00+02:00", 0, "expires forever"),
    ],
    ids=["past", "forever-with-offset", "far-future"],
)
def test_a_listed_model_is_resident_only_while_its_expiry_is_ahead(
    fake: FakeOllama, preloader: Preloader, expires_at: str, status: int, phrase: str
) -> None:
    fake.add_model("m")
    row = {"name": "m:latest", "model": "m:latest", "size": 10, "size_vram": 10, "expires_at": expires_at}
    fake.fail("/api/ps", 200, raw_body=json.dumps({"models": [row]}).encode(), times=99)
    result = preloader.run(**settings(fake, "m"))
    assert result.returncode == status, result.stdout
    assert re.search(rf"^m: .*{phrase}", result.stdout, re.MULTILINE), result.stdout
    assert f"(exit {status})" in result.stdout.splitlines()[-1]


def test_an_expiry_written_with_a_utc_offset_is_read_in_that_offset(fake: FakeOllama, preloader: Preloader) -> None:
    # Ollama writes expires_at in the server's time zone. Read without its offset, "behind" (a minute ago at
    # +05:00) would look five hours ahead, and "ahead" (ten minutes ahead at -05:30) long expired.
    now = datetime.now(timezone.utc)
    ahead = (now + timedelta(minutes=10)).astimezone(timezone(-timedelta(hours=5, minutes=30)))
    behind = (now - timedelta(minutes=1)).astimezone(timezone(timedelta(hours=5)))
    rows = [
        {"name": f"{name}:latest", "model": f"{name}:latest", "size": 10, "size_vram": 10, "expires_at": at}
        for name, at in (("ahead", ahead.isoformat(timespec="microseconds")), ("behind", behind.isoformat()))
    ]
    for name in ("ahead", "behind"):
        fake.add_model(name)
    fake.fail("/api/ps", 200, raw_body=json.dumps({"models": rows}).encode(), times=99)
    result = preloader.run(**settings(fake, "ahead,behind"))
    assert result.returncode == 4, result.stdout
    assert re.search(r"^ahead: resident \(100% GPU, expires in (10m|9m5\d)", result.stdout, re.MULTILINE), result.stdout
    assert re.search(r"^behind: not resident", result.stdout, re.MULTILINE), result.stdout


def test_listing_more_models_than_the_server_keeps_is_warned_about_before_warming(
    fake: FakeOllama, preloader: Preloader
) -> None:
    for name in ("a", "b"):
        fake.add_model(name)
    result = preloader.run(**settings(fake, "a,b", OLLAMA_MAX_LOADED_MODELS="1"))
    warning = result.stdout.index("warning: 2 models listed but the server keeps at most 1")
    assert warning < result.stdout.index("a: warming")
    assert fake.requests_to("/api/generate")  # a warning, not a refusal


def test_a_short_keep_alive_is_reported_as_a_countdown(fake: FakeOllama, preloader: Preloader) -> None:
    fake.add_model("m")
    result = preloader.run(**settings(fake, "m", OLLAMA_PRELOAD_KEEP_ALIVE="10m"))
    assert result.returncode == 0
    assert re.search(r"m: resident \(100% CPU, expires in (10m|9m5\d)", result.stdout), result.stdout


def test_a_failure_to_list_loaded_models_leaves_residency_unverified_and_exits_4(
    fake: FakeOllama, preloader: Preloader
) -> None:
    fake.add_model("m")
    fake.fail("/api/ps", 500, "boom", times=99)
    result = preloader.run(**settings(fake, "m"))
    assert result.returncode == 4, result.stdout
    assert fake.requests_to("/api/ps") and [b["model"] for b in bodies(fake, "/api/generate")] == ["m"]
    assert "not ready: m" in result.stdout and "(exit 4)" in result.stdout.splitlines()[-1]


# --- output, reports, exit statuses ----------------------------------------------------------------------


def test_json_logs_are_one_object_per_line_summary_included(fake: FakeOllama, preloader: Preloader) -> None:
    fake.add_model("m")
    result = preloader.run(**settings(fake, "m,absent", OLLAMA_PRELOAD_LOG_FORMAT="json"))
    if preloader is BASH:
        assert_bash_refused(result, fake, "OLLAMA_PRELOAD_LOG_FORMAT")
        return
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert {"start", "wait", "ready", "warming", "warmed", "failed", "resident", "summary"} <= {
        record["event"] for record in records
    }
    assert all(record["time"].endswith("Z") for record in records)
    summary = records[-1]["report"]
    assert summary["exit_status"] == 4 == result.returncode
    assert [(row["model"], row["outcome"]) for row in summary["models"]] == [("m", "warmed"), ("absent", "failed")]


def test_the_report_file_holds_every_model_with_its_timings(
    fake: FakeOllama, preloader: Preloader, tmp_path: Path
) -> None:
    fake.add_model("m", load_delay=0.3)
    report = tmp_path / "report.json"  # the package refuses a directory that does not exist (exit 2)
    result = preloader.run(**settings(fake, "m", OLLAMA_PRELOAD_REPORT=str(report)))
    if preloader is BASH:
        assert_bash_refused(result, fake, "OLLAMA_PRELOAD_REPORT")
        assert not report.exists()
        return
    assert result.returncode == 0, result.stdout
    data = json.loads(report.read_text())
    (row,) = data["models"]
    assert (row["model"], row["kind"], row["outcome"], row["resident"]) == ("m", "generate", "warmed", True)
    assert row["seconds"] >= 0.3 and row["load_seconds"] >= 0.3
    assert data["server_version"] == fake.version and data["exit_status"] == 0


def test_best_effort_logs_failures_but_exits_0(fake: FakeOllama, preloader: Preloader) -> None:
    result = preloader.run(**settings(fake, "absent", OLLAMA_PRELOAD_BEST_EFFORT="true"))
    assert result.returncode == 0
    assert "absent: failed:" in result.stdout and "best effort" in result.stdout.splitlines()[-1]
    if preloader is PYTHON:
        assert "(best effort: reported as success)" in result.stdout


def test_best_effort_turns_an_unreachable_server_into_exit_0(preloader: Preloader) -> None:
    with FakeOllama(start_delay=60) as fake:
        result = preloader.run(**settings(fake, "m", OLLAMA_PRELOAD_WAIT_TIMEOUT="0.5", OLLAMA_PRELOAD_BEST_EFFORT="1"))
    assert result.returncode == 0 and "did not answer" in result.stdout


def test_the_api_key_is_sent_as_a_bearer_token_and_never_printed(fake: FakeOllama, preloader: Preloader) -> None:
    fake.add_model("m")
    secret = "sk-test-0123456789"
    result = preloader.run(**settings(fake, "m", OLLAMA_API_KEY=secret, OLLAMA_PRELOAD_VERBOSE="true"))
    assert result.returncode == 0, result.stdout
    assert fake.requests and all(r.header("Authorization") == f"Bearer {secret}" for r in fake.requests)
    assert secret not in result.stdout + result.stderr


def test_without_an_api_key_no_authorization_header_is_sent(fake: FakeOllama, preloader: Preloader) -> None:
    fake.add_model("m")
    result = preloader.run(**settings(fake, "m"))
    assert result.returncode == 0, result.stdout
    assert fake.requests and all(r.header("Authorization") is None for r in fake.requests)


def test_flags_override_the_environment(fake: FakeOllama, preloader: Preloader) -> None:
    fake.add_model("flagged")
    result = preloader.run("--models", "flagged", "--num-predict", "2", **settings(fake, "from-env"))
    if preloader is BASH:  # it reads the environment only
        assert_bash_refused(result, fake, "--models")
        return
    assert result.returncode == 0, result.stdout
    (body,) = bodies(fake, "/api/generate")
    assert (body["model"], body["options"]["num_predict"]) == ("flagged", 2)


def test_ollama_models_is_the_list_when_ollama_preload_models_is_empty(fake: FakeOllama, preloader: Preloader) -> None:
    fake.add_model("m")
    result = preloader.run(**settings(fake, "", OLLAMA_MODELS="m"))
    assert result.returncode == 0, result.stdout
    assert [b["model"] for b in bodies(fake, "/api/generate")] == ["m"]


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_the_run_at_once_and_says_which_models_were_done(
    fake: FakeOllama, preloader: Preloader, sig: signal.Signals, status: int
) -> None:
    fake.add_model("quick")
    fake.add_model("slow", load_delay=30)
    process = preloader.popen(**settings(fake, "quick,slow"))
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("slow: warming"):
            break
    started = time.monotonic()
    process.send_signal(sig)
    output, errors = process.communicate(timeout=10)
    assert process.returncode == status, output + errors
    assert time.monotonic() - started < 3  # the 30 s load in flight is abandoned, not waited for
    assert f"interrupted by {sig.name}; done: quick" in output
    assert "not ready: slow" in output and f"(exit {status})" in output.splitlines()[-1]
    if preloader is PYTHON:
        assert f"preloader: warning: interrupted by {sig.name}; done: quick" in output
        assert f"not ready: slow; interrupted by {sig.name} (exit {status})" in output


# --- invalid configuration: exit 2 and not a single request ----------------------------------------------

BAD_CONFIGURATIONS = [
    {"OLLAMA_PRELOAD_MODELS": ""},
    {"OLLAMA_PRELOAD_MODELS": " ,, "},
    {"OLLAMA_PRELOAD_MODELS": "", "OLLAMA_MODELS": "/root/.ollama/models"},
    {"OLLAMA_PRELOAD_MODELS": "bad!name"},
    {"OLLAMA_PRELOAD_MODELS": 'x"},{"model":"y'},
    {"OLLAMA_PRELOAD_MODELS": "$(touch${IFS}/tmp/preloader-pwned)"},
    {"OLLAMA_PRELOAD_MODELS": "my.ns/model"},
    {"OLLAMA_PRELOAD_MODELS": "model:"},
    {"OLLAMA_PRELOAD_MODELS": "m,m:latest"},
    {"OLLAMA_PRELOAD_MODELS": "m?num_ctx"},
    {"OLLAMA_PRELOAD_MODELS": "m?keep_alive=1d"},
    {"OLLAMA_PRELOAD_MODELS": "m?think=7"},
    {"OLLAMA_PRELOAD_NUM_PREDICT": "0"},
    {"OLLAMA_PRELOAD_NUM_PREDICT": "9"},
    {"OLLAMA_PRELOAD_NUM_PREDICT": "abc"},
    {"OLLAMA_PRELOAD_KEEP_ALIVE": "1d"},
    {"OLLAMA_PRELOAD_KEEP_ALIVE": "forever"},
    {"OLLAMA_PRELOAD_KEEP_ALIVE": "500ms"},
    {"OLLAMA_PRELOAD_WAIT_TIMEOUT": "soon"},
    {"OLLAMA_PRELOAD_WAIT_TIMEOUT": "0"},
    {"OLLAMA_PRELOAD_WARM_TIMEOUT": "-1m"},
    {"OLLAMA_PRELOAD_PULL": "always"},
    {"OLLAMA_PRELOAD_BEST_EFFORT": "maybe"},
    {"OLLAMA_PRELOAD_LOG_FORMAT": "xml"},
    {"OLLAMA_PRELOAD_ATTEMPTS": "0"},
    {"OLLAMA_PRELOAD_CONCURRENCY": "64"},
    {"OLLAMA_MAX_LOADED_MODELS": "many"},
    {"OLLAMA_API_KEY": "sk-secret\nX-Injected: 1"},
]


@pytest.mark.parametrize("bad", BAD_CONFIGURATIONS, ids=lambda bad: ",".join(f"{k}={v!r}" for k, v in bad.items()))
def test_invalid_configuration_exits_2_before_sending_anything(
    fake: FakeOllama, preloader: Preloader, bad: dict[str, str]
) -> None:
    fake.add_model("m")
    result = preloader.run(**{**settings(fake, "m"), **bad})
    assert result.returncode == 2, result.stdout
    assert fake.requests == []
    lines = result.stdout.splitlines()
    assert lines[-1].endswith("(exit 2)")
    assert any(key in line for line in lines[:-1] for key in bad), result.stdout
    if preloader is PYTHON:
        assert lines[-1] == "preloader: error: invalid configuration; nothing was sent to the server (exit 2)"
    assert not PWNED.exists()
    assert "sk-secret" not in result.stdout + result.stderr


def test_a_path_in_ollama_models_is_refused_with_a_message_that_says_why(
    fake: FakeOllama, preloader: Preloader
) -> None:
    result = preloader.run(**settings(fake, "", OLLAMA_MODELS="/root/.ollama/models"))
    assert result.returncode == 2 and fake.requests == []
    assert "OLLAMA_MODELS='/root/.ollama/models' looks like a path" in result.stdout
    assert "models-directory variable" in result.stdout
    if preloader is PYTHON:
        assert "preloader: error: OLLAMA_MODELS='/root/.ollama/models' looks like a path" in result.stdout


# Python only: flags and JSON logs are the package's (the bash fallback refuses both, see above).
def test_an_invalid_flag_value_exits_2_naming_the_flag(fake: FakeOllama) -> None:
    result = PYTHON.run("--pull", "sometimes", **settings(fake, "m"))
    assert result.returncode == 2 and "preloader: error: --pull='sometimes' is invalid" in result.stdout
    assert fake.requests == []


def test_invalid_configuration_is_json_when_the_flag_asks_for_json(fake: FakeOllama) -> None:
    result = PYTHON.run("--log-format", "json", **settings(fake, "m", OLLAMA_PRELOAD_NUM_PREDICT="0"))
    assert result.returncode == 2
    assert [json.loads(line)["event"] for line in result.stdout.splitlines()] == ["config", "exit"]


@pytest.mark.parametrize(
    "bad", [{"OLLAMA_PRELOAD_PULL": "x"}, {"OLLAMA_PRELOAD_NUM_PREDICT": "0"}], ids=["pull=x", "num_predict=0"]
)
def test_invalid_configuration_is_json_when_the_environment_asks_for_json(
    fake: FakeOllama, bad: dict[str, str]
) -> None:
    result = PYTHON.run(**settings(fake, "m", OLLAMA_PRELOAD_LOG_FORMAT="json", **bad))
    assert result.returncode == 2
    assert [json.loads(line)["event"] for line in result.stdout.splitlines()] == ["config", "exit"]


def test_the_same_run_behaves_the_same_against_a_current_server(preloader: Preloader) -> None:
    # The default fake is the observed v0.11.4; this one follows the reference (read from v0.32/0.33 source):
    # normalised 404 names, 400 for invalid names, loading models hidden from /api/ps.
    with FakeOllama(version="0.32.15") as fake:
        fake.add_model("llama3.2")
        fake.add_model("nomic-embed-text", embedding=True)
        result = preloader.run(**settings(fake, "llama3.2 nomic-embed-text absent", OLLAMA_PRELOAD_KEEP_ALIVE="-1"))
        assert result.returncode == 4, result.stdout
        assert [b["model"] for b in bodies(fake, "/api/generate")] == ["llama3.2"]
        assert [b["model"] for b in bodies(fake, "/api/embed")] == ["nomic-embed-text"]
        assert "llama3.2: resident (100% CPU, expires forever)" in result.stdout
        assert "nomic-embed-text: resident (100% CPU, expires forever)" in result.stdout
        assert (
            "absent: failed: not found on the server" in result.stdout and "'absent:latest' not found" in result.stdout
        )
        if preloader is PYTHON:
            assert "absent: failed: not found on the server (model 'absent:latest' not found)" in result.stdout
