"""Check mode's decision from one `/api/ps` snapshot, and its runner's exit statuses (no server needed)."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta, timezone

import pytest

from preloader.check import CHECK_TIMEOUT, check_models, residency_problem, run_check
from preloader.client import RunningModel, Timeout
from preloader.config import load_config
from preloader.durations import parse_keep_alive
from preloader.entries import parse_entry
from preloader.errors import OllamaResponseError, OllamaTimeout, OllamaUnreachable
from preloader.logs import EventLog

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
PINNED = datetime(2318, 9, 13, 21, 26, 43, tzinfo=timezone(timedelta(hours=-6)))


def running(name: str, *, expires_in: float | None = 300.0, context_length: int | None = 4096) -> RunningModel:
    expires = PINNED if expires_in is None else NOW + timedelta(seconds=expires_in)
    return RunningModel(name, size=100, size_vram=0, expires_at=expires, context_length=context_length)


def test_a_loaded_model_reported_under_its_full_name_is_resident() -> None:
    findings = check_models([parse_entry("llama3.2"), parse_entry("Qwen3:0.6B")], [
        running("llama3.2:latest"), running("qwen3:0.6b")
    ], NOW, None)  # fmt: skip
    assert [(finding.model, finding.problem) for finding in findings] == [("llama3.2", None), ("Qwen3:0.6B", None)]


def test_a_missing_model_is_reported_with_what_is_loaded_instead_and_what_to_do() -> None:
    (finding,) = check_models([parse_entry("llama3.2")], [running("other:latest")], NOW, None)
    assert finding.problem is not None
    assert finding.problem.startswith("not loaded")
    assert "other:latest" in finding.problem
    assert "OLLAMA_MAX_LOADED_MODELS" in finding.problem


def test_a_model_past_its_expiry_is_not_resident_even_though_ps_still_lists_it() -> None:
    problem = residency_problem(parse_entry("m"), running("m:latest", expires_in=-3), NOW)
    assert problem is not None and "keep-alive ran out" in problem


def test_a_model_expiring_later_or_pinned_is_resident() -> None:
    assert residency_problem(parse_entry("m"), running("m:latest", expires_in=1), NOW) is None
    assert residency_problem(parse_entry("m"), running("m:latest", expires_in=None), NOW) is None


def test_an_entry_with_num_ctx_needs_the_same_context_length_loaded() -> None:
    entry = parse_entry("m?num_ctx=8192")
    assert residency_problem(entry, running("m:latest", context_length=8192), NOW) is None
    problem = residency_problem(entry, running("m:latest", context_length=4096), NOW)
    assert problem is not None and "num_ctx 4096" in problem and "num_ctx=8192" in problem


def test_a_server_too_old_to_report_context_length_is_not_held_against_the_model() -> None:
    assert residency_problem(parse_entry("m?num_ctx=8192"), running("m:latest", context_length=None), NOW) is None


def test_cloud_models_and_entries_that_ask_for_an_unload_are_not_checked() -> None:
    entries = [parse_entry("gpt-oss:120b-cloud"), parse_entry("a?keep_alive=0"), parse_entry("b")]
    assert [finding.model for finding in check_models(entries, [], NOW, None)] == ["b"]
    # the run's default keep-alive of 0 asks every entry to be unloaded, unless an entry says otherwise
    entries = [parse_entry("a"), parse_entry("b?keep_alive=-1")]
    assert [finding.model for finding in check_models(entries, [], NOW, parse_keep_alive("0"))] == ["b"]


class PsOnly:
    """A client that can only list models: check mode touching anything else fails with AttributeError."""

    base_url = "http://127.0.0.1:11434"

    def __init__(self, answer: list[RunningModel] | Exception) -> None:
        self.answer = answer
        self.timeouts: list[Timeout] = []

    def ps(self, *, timeout: Timeout) -> list[RunningModel]:
        self.timeouts.append(timeout)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def check(models: str, answer: list[RunningModel] | Exception) -> tuple[int, list[dict], PsOnly]:
    config = load_config({"OLLAMA_PRELOAD_MODELS": models})
    out = io.StringIO()
    client = PsOnly(answer)
    status = run_check(config, client, EventLog("json", out), now=NOW)
    return status, [json.loads(line) for line in out.getvalue().splitlines()], client


def test_check_exits_0_when_every_listed_model_is_resident_after_exactly_one_short_ps() -> None:
    status, records, client = check(
        "a, b?num_ctx=2048", [running("a:latest"), running("b:latest", context_length=2048)]
    )
    assert status == 0
    assert client.timeouts == [CHECK_TIMEOUT]
    assert max(CHECK_TIMEOUT) <= 5
    assert [record["level"] for record in records] == ["info"]


def test_check_exits_4_with_one_line_per_model_that_is_not_resident() -> None:
    status, records, _ = check("a, b, c?num_ctx=2048", [running("a:latest"), running("c:latest", context_length=4096)])
    assert status == 4
    not_resident = [record for record in records if record["event"] == "not-resident"]
    assert [record["model"] for record in not_resident] == ["b", "c"]
    assert "num_ctx 4096" in not_resident[1]["message"]


@pytest.mark.parametrize(
    "error",
    [
        OllamaUnreachable("connection refused", url="u"),
        OllamaTimeout("no answer within 3 s", url="u", timeout=3.0),
        OllamaResponseError("Forbidden", status=403, url="u"),
    ],
    ids=["refused", "silent", "forbidden"],
)
def test_check_exits_3_when_the_server_cannot_be_read(error: Exception) -> None:
    status, records, _ = check("a", error)
    assert status == 3
    assert records[-1]["exit_status"] == 3
