"""The preloader's behaviour, through its real CLI, against a fake Ollama that behaves like the reference."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fake.conftest import REPO, clean_env, run_cli
from tests.support.fake_ollama import FakeOllama

FAST = {"OLLAMA_PRELOAD_WAIT_TIMEOUT": "5"}


def settings(fake: FakeOllama, models: str, **extra: str) -> dict[str, str]:
    return {"OLLAMA_HOST": fake.url, "OLLAMA_PRELOAD_MODELS": models, **FAST, **extra}


def bodies(fake: FakeOllama, path: str) -> list[dict]:
    return [request.body for request in fake.requests_to(path)]


# --- warming -------------------------------------------------------------------------------------------


def test_completion_model_is_warmed_with_a_short_generation_and_is_resident(fake: FakeOllama) -> None:
    fake.add_model("smollm2:135m")
    result = run_cli(**settings(fake, "smollm2:135m", OLLAMA_PRELOAD_KEEP_ALIVE="-1"))
    assert result.returncode == 0, result.stdout + result.stderr
    (body,) = bodies(fake, "/api/generate")
    assert body["model"] == "smollm2:135m" and body["stream"] is False and body["prompt"]
    assert body["options"] == {"num_predict": 1}
    assert body["keep_alive"] == -1 and isinstance(body["keep_alive"], int)
    assert "smollm2:135m" in fake.loaded()
    assert "smollm2:135m: warmed in" in result.stdout
    assert "smollm2:135m: resident (100% CPU, expires forever)" in result.stdout
    assert "1 of 1 model(s) warmed and resident (exit 0)" in result.stdout


def test_embedding_model_is_warmed_through_embed_and_never_sent_to_generate(fake: FakeOllama) -> None:
    fake.add_model("nomic-embed-text", embedding=True)
    fake.add_model("llama3.2")
    result = run_cli(**settings(fake, "nomic-embed-text llama3.2", OLLAMA_PRELOAD_KEEP_ALIVE="30m"))
    assert result.returncode == 0, result.stdout
    assert [b["model"] for b in bodies(fake, "/api/generate")] == ["llama3.2"]
    (embed,) = bodies(fake, "/api/embed")
    assert embed["model"] == "nomic-embed-text" and embed["input"] and embed["keep_alive"] == "30m"
    assert "nomic-embed-text: warmed in" in result.stdout and "(embed" in result.stdout


def test_on_servers_without_capabilities_an_embedding_model_is_recognised_by_its_pooling_type() -> None:
    with FakeOllama(legacy_show=True) as fake:
        fake.add_model("all-minilm", embedding=True)
        result = run_cli(**settings(fake, "all-minilm"))
        assert result.returncode == 0, result.stdout
        assert bodies(fake, "/api/generate") == [] and len(bodies(fake, "/api/embed")) == 1


def test_models_are_warmed_in_the_listed_order(fake: FakeOllama) -> None:
    for name in ("c", "a", "b"):
        fake.add_model(name)
    assert run_cli(**settings(fake, "c,a,b")).returncode == 0
    assert [b["model"] for b in bodies(fake, "/api/generate")] == ["c", "a", "b"]


def test_entry_options_and_request_fields_reach_the_server(fake: FakeOllama) -> None:
    fake.add_model("qwen3:0.6b")
    entry = "qwen3:0.6b?num_ctx=8192&temperature=0&keep_alive=1h&prompt=Say+hi&think=false"
    result = run_cli(**settings(fake, entry, OLLAMA_PRELOAD_NUM_PREDICT="3", OLLAMA_PRELOAD_KEEP_ALIVE="-1"))
    assert result.returncode == 0, result.stdout
    (body,) = bodies(fake, "/api/generate")
    assert body["options"] == {"num_predict": 3, "num_ctx": 8192, "temperature": 0}
    assert (body["keep_alive"], body["prompt"], body["think"]) == ("1h", "Say hi", False)
    assert fake.loaded()["qwen3:0.6b"].options.get("num_ctx") == 8192


def test_cloud_models_are_skipped_without_any_request(fake: FakeOllama) -> None:
    fake.add_model("llama3.2")
    result = run_cli(**settings(fake, "gpt-oss:120b-cloud,llama3.2"))
    assert result.returncode == 0, result.stdout
    assert all(r.body is None or r.body.get("model") != "gpt-oss:120b-cloud" for r in fake.requests)
    assert "gpt-oss:120b-cloud: skipped: cloud model" in result.stdout


def test_concurrent_warming_warms_every_model(fake: FakeOllama) -> None:
    for name in ("a", "b", "c"):
        fake.add_model(name, load_delay=0.2)
    result = run_cli(**settings(fake, "a b c", OLLAMA_PRELOAD_CONCURRENCY="3"))
    assert result.returncode == 0, result.stdout
    assert sorted(b["model"] for b in bodies(fake, "/api/generate")) == ["a", "b", "c"]


# --- missing models and pulling --------------------------------------------------------------------------


def test_a_missing_model_fails_with_the_pull_hint_and_is_never_warmed(fake: FakeOllama) -> None:
    fake.add_model("present")
    result = run_cli(**settings(fake, "present,absent"))
    assert result.returncode == 4
    assert "absent: failed: not found on the server" in result.stdout
    assert "ollama pull absent" in result.stdout and "OLLAMA_PRELOAD_PULL=missing" in result.stdout
    assert [b["model"] for b in bodies(fake, "/api/generate")] == ["present"]
    assert bodies(fake, "/api/pull") == []


def test_pull_missing_pulls_a_model_the_server_lacks_then_warms_it() -> None:
    with FakeOllama(pullable=["tinyllama"]) as fake:
        result = run_cli(**settings(fake, "tinyllama", OLLAMA_PRELOAD_PULL="missing"))
        assert result.returncode == 0, result.stdout
        assert [b["model"] for b in bodies(fake, "/api/pull")] == ["tinyllama"]
        assert "tinyllama: pulled in" in result.stdout and "tinyllama:latest" in fake.loaded()


def test_pull_missing_reports_the_servers_error_when_the_pull_fails(fake: FakeOllama) -> None:
    result = run_cli(**settings(fake, "nosuchmodel", OLLAMA_PRELOAD_PULL="missing"))
    assert result.returncode == 4
    assert "nosuchmodel: failed: pull model manifest: file does not exist" in result.stdout


# --- waiting for the server ------------------------------------------------------------------------------


def test_a_server_that_starts_late_is_waited_for() -> None:
    with FakeOllama(start_delay=1.5) as fake:
        fake.add_model("m")
        result = run_cli(**settings(fake, "m"))
        assert result.returncode == 0, result.stdout
        assert "server ready after" in result.stdout


def test_a_server_that_never_answers_fails_with_exit_3_at_the_deadline() -> None:
    with FakeOllama(start_delay=60) as fake:
        started = time.monotonic()
        result = run_cli(**settings(fake, "m", OLLAMA_PRELOAD_WAIT_TIMEOUT="1.5"))
        elapsed = time.monotonic() - started
    assert result.returncode == 3
    assert "did not answer within 1.50 s" in result.stdout and "OLLAMA_PRELOAD_WAIT_TIMEOUT" in result.stdout
    assert elapsed >= 1.5


def test_a_connected_but_silent_server_does_not_stall_the_wait_past_its_deadline() -> None:
    with FakeOllama(silent_for=30) as fake:
        started = time.monotonic()
        result = run_cli(**settings(fake, "m", OLLAMA_PRELOAD_WAIT_TIMEOUT="2"))
        elapsed = time.monotonic() - started
    assert result.returncode == 3, result.stdout
    assert elapsed < 2 + 3  # the deadline plus interpreter start-up, never a whole silent period


def test_a_server_that_is_silent_for_a_while_then_serves_is_detected() -> None:
    with FakeOllama(silent_for=1.0) as fake:
        fake.add_model("m")
        result = run_cli(**settings(fake, "m"))
        assert result.returncode == 0, result.stdout


def test_waiting_logs_a_line_every_few_seconds_not_every_attempt() -> None:
    with FakeOllama(start_delay=60) as fake:
        result = run_cli(**settings(fake, "m", OLLAMA_PRELOAD_WAIT_TIMEOUT="6"))
    assert result.returncode == 3
    assert result.stdout.count("still waiting") == 1


# --- retries ---------------------------------------------------------------------------------------------


def test_a_busy_server_is_retried_until_it_accepts(fake: FakeOllama) -> None:
    fake.add_model("m")
    fake.fail("/api/generate", 503, "server busy, please try again.  maximum pending requests exceeded", times=2)
    result = run_cli(**settings(fake, "m"))
    assert result.returncode == 0, result.stdout
    assert len(bodies(fake, "/api/generate")) == 3
    assert result.stdout.count("retrying in") == 2


def test_a_connection_reset_mid_request_is_retried(fake: FakeOllama) -> None:
    fake.add_model("m")
    fake.reset_connection("/api/generate")
    result = run_cli(**settings(fake, "m"))
    assert result.returncode == 0, result.stdout
    assert len(bodies(fake, "/api/generate")) == 2


def test_transient_failures_give_up_after_the_configured_attempts(fake: FakeOllama) -> None:
    fake.add_model("m")
    fake.fail("/api/generate", 500, "llama runner process has terminated: signal: killed", times=5)
    result = run_cli(**settings(fake, "m", OLLAMA_PRELOAD_ATTEMPTS="2"))
    assert result.returncode == 4
    assert len(bodies(fake, "/api/generate")) == 2
    assert "m: failed: llama runner process has terminated: signal: killed (HTTP 500)" in result.stdout


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, "invalid options"),
        (500, "model requires more system memory (9.0 GiB) than is available (4.0 GiB)"),
    ],
)
def test_deterministic_refusals_are_not_retried(fake: FakeOllama, status: int, error: str) -> None:
    fake.add_model("m")
    fake.fail("/api/generate", status, error)
    result = run_cli(**settings(fake, "m"))
    assert result.returncode == 4
    assert len(bodies(fake, "/api/generate")) == 1
    assert error in result.stdout


def test_a_load_slower_than_the_warm_timeout_fails_with_a_hint(fake: FakeOllama) -> None:
    fake.add_model("big", load_delay=5)
    result = run_cli(**settings(fake, "big", OLLAMA_PRELOAD_WARM_TIMEOUT="1"))
    assert result.returncode == 4
    assert "OLLAMA_PRELOAD_WARM_TIMEOUT" in result.stdout
    time.sleep(0.3)  # the fake notices the hang-up on its next poll
    assert fake.cancelled_loads == ["big:latest"]  # why the timeout must be long: the load was lost


# --- residency -------------------------------------------------------------------------------------------


def test_a_model_evicted_by_a_later_one_fails_the_run_and_the_message_says_why() -> None:
    with FakeOllama(max_loaded=1) as fake:
        fake.add_model("first")
        fake.add_model("second")
        result = run_cli(**settings(fake, "first,second"))
    assert result.returncode == 4
    assert "first: not resident:" in result.stdout and "OLLAMA_MAX_LOADED_MODELS" in result.stdout
    assert "second: resident" in result.stdout


def test_listing_more_models_than_the_server_keeps_is_warned_about_before_warming(fake: FakeOllama) -> None:
    for name in ("a", "b"):
        fake.add_model(name)
    result = run_cli(**settings(fake, "a,b", OLLAMA_MAX_LOADED_MODELS="1"))
    warning = result.stdout.index("warning: 2 models listed but the server keeps at most 1")
    assert warning < result.stdout.index("a: warming")


def test_a_short_keep_alive_is_reported_as_a_countdown(fake: FakeOllama) -> None:
    fake.add_model("m")
    result = run_cli(**settings(fake, "m", OLLAMA_PRELOAD_KEEP_ALIVE="10m"))
    assert result.returncode == 0
    assert "m: resident (100% CPU, expires in 10m)" in result.stdout or "expires in 9m59s" in result.stdout


# --- output, reports, exit statuses ----------------------------------------------------------------------


def test_json_logs_are_one_object_per_line_summary_included(fake: FakeOllama) -> None:
    fake.add_model("m")
    result = run_cli(**settings(fake, "m,absent", OLLAMA_PRELOAD_LOG_FORMAT="json"))
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert {"start", "wait", "ready", "warming", "warmed", "failed", "resident", "summary"} <= {
        record["event"] for record in records
    }
    assert all(record["time"].endswith("Z") for record in records)
    summary = records[-1]["report"]
    assert summary["exit_status"] == 4 == result.returncode
    assert [(row["model"], row["outcome"]) for row in summary["models"]] == [("m", "warmed"), ("absent", "failed")]


def test_the_report_file_holds_every_model_with_its_timings(fake: FakeOllama, tmp_path: Path) -> None:
    fake.add_model("m", load_delay=0.3)
    report = tmp_path / "out" / "report.json"
    assert run_cli(**settings(fake, "m", OLLAMA_PRELOAD_REPORT=str(report))).returncode == 0
    data = json.loads(report.read_text())
    (row,) = data["models"]
    assert (row["model"], row["kind"], row["outcome"], row["resident"]) == ("m", "generate", "warmed", True)
    assert row["seconds"] >= 0.3 and row["load_seconds"] >= 0.3
    assert data["server_version"] == fake.version and data["exit_status"] == 0


def test_best_effort_logs_failures_but_exits_0(fake: FakeOllama) -> None:
    result = run_cli(**settings(fake, "absent", OLLAMA_PRELOAD_BEST_EFFORT="true"))
    assert result.returncode == 0
    assert "absent: failed:" in result.stdout and "(best effort: reported as success)" in result.stdout


def test_best_effort_turns_an_unreachable_server_into_exit_0() -> None:
    with FakeOllama(start_delay=60) as fake:
        result = run_cli("--best-effort", **settings(fake, "m", OLLAMA_PRELOAD_WAIT_TIMEOUT="0.5"))
    assert result.returncode == 0 and "did not answer" in result.stdout


def test_the_api_key_is_sent_as_a_bearer_token_and_never_printed(fake: FakeOllama) -> None:
    fake.add_model("m")
    secret = "sk-test-0123456789"
    result = run_cli("--verbose", **settings(fake, "m", OLLAMA_API_KEY=secret))
    assert result.returncode == 0
    assert all(r.headers.get("Authorization") == f"Bearer {secret}" for r in fake.requests)
    assert secret not in result.stdout + result.stderr


def test_without_an_api_key_no_authorization_header_is_sent(fake: FakeOllama) -> None:
    fake.add_model("m")
    assert run_cli(**settings(fake, "m")).returncode == 0
    assert all("Authorization" not in r.headers for r in fake.requests)


def test_flags_override_the_environment(fake: FakeOllama) -> None:
    fake.add_model("flagged")
    result = run_cli("--models", "flagged", "--num-predict", "2", **settings(fake, "from-env"))
    assert result.returncode == 0, result.stdout
    (body,) = bodies(fake, "/api/generate")
    assert (body["model"], body["options"]["num_predict"]) == ("flagged", 2)


def test_the_checkout_runner_behaves_like_the_installed_cli(fake: FakeOllama) -> None:
    fake.add_model("m")
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "preload_models.py")],
        cwd="/",
        env=clean_env(**settings(fake, "m")),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_the_run_cleanly_and_says_which_models_were_done(
    fake: FakeOllama, sig: signal.Signals, status: int
) -> None:
    fake.add_model("quick")
    fake.add_model("slow", load_delay=30)
    process = subprocess.Popen(
        [sys.executable, "-m", "preloader"],
        cwd=REPO,
        text=True,
        env=clean_env(**settings(fake, "quick,slow")),
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("slow: warming"):
            break
    process.send_signal(sig)
    output = process.stdout.read()
    assert process.wait(timeout=10) == status
    assert f"done: quick (exit {status})" not in output  # the verdict line carries the status itself
    assert "warning: interrupted by " + sig.name + "; done: quick" in output
    assert f"(exit {status})" in output


# --- invalid configuration: exit 2 and not a single request ----------------------------------------------

BAD_CONFIGURATIONS = [
    {"OLLAMA_PRELOAD_MODELS": ""},
    {"OLLAMA_PRELOAD_MODELS": " ,, "},
    {"OLLAMA_PRELOAD_MODELS": "bad!name"},
    {"OLLAMA_PRELOAD_MODELS": "my.ns/model"},
    {"OLLAMA_PRELOAD_MODELS": "model:"},
    {"OLLAMA_PRELOAD_MODELS": "m,m:latest"},
    {"OLLAMA_PRELOAD_MODELS": "m?num_ctx"},
    {"OLLAMA_PRELOAD_MODELS": "m?keep_alive=1d"},
    {"OLLAMA_PRELOAD_MODELS": "m?think=7"},
    {"OLLAMA_PRELOAD_MODELS": "", "OLLAMA_MODELS": "/root/.ollama/models"},
    {"OLLAMA_PRELOAD_NUM_PREDICT": "0"},
    {"OLLAMA_PRELOAD_NUM_PREDICT": "9"},
    {"OLLAMA_PRELOAD_NUM_PREDICT": "abc"},
    {"OLLAMA_PRELOAD_KEEP_ALIVE": "1d"},
    {"OLLAMA_PRELOAD_KEEP_ALIVE": "forever"},
    {"OLLAMA_PRELOAD_WAIT_TIMEOUT": "soon"},
    {"OLLAMA_PRELOAD_WAIT_TIMEOUT": "0"},
    {"OLLAMA_PRELOAD_WARM_TIMEOUT": "-1m"},
    {"OLLAMA_PRELOAD_PULL": "always"},
    {"OLLAMA_PRELOAD_BEST_EFFORT": "maybe"},
    {"OLLAMA_PRELOAD_LOG_FORMAT": "xml"},
    {"OLLAMA_PRELOAD_ATTEMPTS": "0"},
    {"OLLAMA_PRELOAD_CONCURRENCY": "64"},
    {"OLLAMA_MAX_LOADED_MODELS": "many"},
]


@pytest.mark.parametrize("bad", BAD_CONFIGURATIONS, ids=lambda bad: ",".join(f"{k}={v}" for k, v in bad.items()))
def test_invalid_configuration_exits_2_before_sending_anything(fake: FakeOllama, bad: dict[str, str]) -> None:
    fake.add_model("m")
    result = run_cli(**{**settings(fake, "m"), **bad})
    assert result.returncode == 2, result.stdout
    assert fake.requests == []
    lines = result.stdout.splitlines()
    assert lines[-1] == "preloader: error: invalid configuration; nothing was sent to the server (exit 2)"
    assert any(key in line for line in lines for key in bad), result.stdout


def test_an_invalid_flag_value_exits_2_naming_the_flag(fake: FakeOllama) -> None:
    result = run_cli("--pull", "sometimes", **settings(fake, "m"))
    assert result.returncode == 2 and "--pull='sometimes' is invalid" in result.stdout
    assert fake.requests == []


def test_invalid_configuration_in_json_mode_is_still_json(fake: FakeOllama) -> None:
    result = run_cli("--log-format", "json", **settings(fake, "m", OLLAMA_PRELOAD_NUM_PREDICT="0"))
    assert result.returncode == 2
    assert [json.loads(line)["event"] for line in result.stdout.splitlines()] == ["config", "exit"]


@pytest.mark.parametrize(("status", "hint"), [(401, "OLLAMA_API_KEY"), (403, "Host: localhost")])
def test_a_health_check_refused_with_4xx_fails_at_once_with_a_hint(fake: FakeOllama, status: int, hint: str) -> None:
    fake.fail("/api/version", status, "nope", times=100)
    started = time.monotonic()
    result = run_cli(**settings(fake, "m", OLLAMA_PRELOAD_WAIT_TIMEOUT="60"))
    assert result.returncode == 3 and hint in result.stdout
    assert time.monotonic() - started < 30  # not the whole wait timeout
    assert len(fake.requests_to("/api/version")) == 1


def test_invalid_configuration_is_json_when_the_environment_asks_for_json(fake: FakeOllama) -> None:
    result = run_cli(**settings(fake, "m", OLLAMA_PRELOAD_LOG_FORMAT="json", OLLAMA_PRELOAD_PULL="x"))
    assert result.returncode == 2
    assert [json.loads(line)["event"] for line in result.stdout.splitlines()] == ["config", "exit"]


def test_a_stop_sequence_option_is_sent_as_the_list_ollama_expects(fake: FakeOllama) -> None:
    fake.add_model("m")
    result = run_cli(**settings(fake, "m?stop=END"))
    assert result.returncode == 0, result.stdout
    assert bodies(fake, "/api/generate")[0]["options"]["stop"] == ["END"]
