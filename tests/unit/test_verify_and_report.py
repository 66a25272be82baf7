"""Residency decisions from one /api/ps snapshot, and the rows, verdict and exit status built from them."""

from datetime import datetime, timedelta, timezone

import pytest

from preloader.client import RunningModel
from preloader.durations import parse_keep_alive
from preloader.entries import parse_entry
from preloader.errors import OllamaResponseError, OllamaTimeout, OllamaUnreachable
from preloader.report import Report, model_rows, models_status, summary_lines
from preloader.results import WarmOutcome
from preloader.retries import is_transient
from preloader.statuses import EXIT_MODELS_NOT_READY, EXIT_OK
from preloader.verify import describe_expiry, placement, unverified, verify_residency

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)
FOREVER = datetime(2318, 9, 13, 21, 26, 43, tzinfo=timezone.utc)


def warmed(text: str, keep_alive: str | None = None) -> WarmOutcome:
    return WarmOutcome(
        parse_entry(text),
        "warmed",
        kind="generate",
        seconds=1.0,
        load_seconds=0.9,
        keep_alive=parse_keep_alive(keep_alive) if keep_alive else None,
    )


def running(name: str, size: int = 100, size_vram: int = 0, expires: datetime = FOREVER) -> RunningModel:
    return RunningModel(name=name, size=size, size_vram=size_vram, expires_at=expires, context_length=4096)


def test_a_model_listed_by_ps_under_its_normalised_name_is_resident() -> None:
    residency = verify_residency([warmed("llama3.2")], [running("llama3.2:latest")], NOW)
    assert residency["llama3.2"].resident
    assert (residency["llama3.2"].where, residency["llama3.2"].expires) == ("100% CPU", "forever")


def test_names_match_without_case_or_default_registry() -> None:
    outcomes = [warmed("registry.ollama.ai/library/Qwen3:0.6B")]
    assert verify_residency(outcomes, [running("qwen3:0.6b")], NOW)["registry.ollama.ai/library/Qwen3:0.6B"].resident


def test_a_warmed_model_missing_from_ps_is_not_resident_and_the_message_says_why() -> None:
    outcomes = [warmed("a"), warmed("b")]
    residency = verify_residency(outcomes, [running("b:latest")], NOW)
    assert not residency["a"].resident
    message = residency["a"].message or ""
    assert "OLLAMA_MAX_LOADED_MODELS" in message and "memory" in message
    assert "warmed 2 model(s) (a, b)" in message and "loaded now: b:latest" in message


def test_a_model_warmed_with_keep_alive_zero_is_expected_to_be_gone() -> None:
    outcomes = [warmed("a", keep_alive="0")]
    rows = model_rows(["a"], outcomes, verify_residency(outcomes, [], NOW))
    assert rows[0].outcome == "warmed" and rows[0].resident is False
    assert models_status(rows) == EXIT_OK


@pytest.mark.parametrize(
    ("size", "size_vram", "where"),
    [(100, 100, "100% GPU"), (100, 0, "100% CPU"), (100, 75, "25%/75% CPU/GPU"), (0, 0, "100% CPU")],
)
def test_placement_reads_like_ollama_ps(size: int, size_vram: int, where: str) -> None:
    assert placement(size, size_vram) == where


def test_far_future_expiry_is_forever_and_near_expiry_is_a_countdown() -> None:
    assert describe_expiry(FOREVER, NOW) == "forever"
    assert describe_expiry(NOW + timedelta(minutes=5), NOW) == "in 5m"
    assert describe_expiry(None, NOW) is None


def test_rows_follow_the_listed_order_and_unreached_models_are_pending() -> None:
    outcomes = [warmed("b"), WarmOutcome(parse_entry("c"), "failed", error="boom")]
    rows = model_rows(["a", "b", "c"], outcomes, verify_residency(outcomes, [running("b:latest")], NOW))
    assert [(row.model, row.outcome) for row in rows] == [("a", "pending"), ("b", "warmed"), ("c", "failed")]
    assert models_status(rows) == EXIT_MODELS_NOT_READY


def test_skipped_cloud_models_do_not_fail_the_run() -> None:
    rows = model_rows(["x:cloud"], [WarmOutcome(parse_entry("x:cloud"), "skipped", error="cloud model")], {})
    assert models_status(rows) == EXIT_OK


def test_summary_is_a_table_then_the_verdict_with_the_exit_status() -> None:
    outcomes = [warmed("a"), warmed("b")]
    rows = model_rows(["a", "b"], outcomes, verify_residency(outcomes, [running("a:latest")], NOW))
    lines = summary_lines(Report("http://x", "0.11.4", 0.1, rows, exit_status=models_status(rows)))
    assert lines[0].split() == ["MODEL", "KIND", "TIME", "LOAD", "RESIDENT", "WHERE", "EXPIRES"]
    assert lines[1].split()[:5] == ["a", "generate", "1.00", "s", "0.90"]
    assert "NO" in lines[2]
    assert lines[-1] == "preloader: 1 of 2 model(s) warmed and resident; not ready: b (exit 4)"


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (OllamaUnreachable("refused", url="u"), True),
        (
            OllamaResponseError(
                "server busy, please try again.  maximum pending requests exceeded", status=503, url="u"
            ),
            True,
        ),
        (OllamaResponseError("request canceled", status=499, url="u"), True),
        (OllamaResponseError("llama runner process has terminated: signal: killed", status=500, url="u"), True),
        (
            OllamaResponseError(
                "model requires more system memory (9 GiB) than is available (4 GiB)", status=500, url="u"
            ),
            False,
        ),
        (OllamaResponseError('option "num_predict" must be of type integer', status=500, url="u"), False),
        (OllamaResponseError("model 'x' not found", status=404, url="u"), False),
        (OllamaResponseError('"x" does not support generate', status=400, url="u"), False),
        (OllamaTimeout("slow", url="u", timeout=1800), False),
    ],
)
def test_only_failures_that_may_pass_on_their_own_are_retried(error: Exception, transient: bool) -> None:
    assert is_transient(error) is transient


@pytest.mark.parametrize(
    ("expires", "resident"),
    [
        (NOW - timedelta(seconds=1), False),
        (NOW - timedelta(days=400), False),
        (NOW, False),
        (NOW + timedelta(seconds=1), True),
        (FOREVER, True),
    ],
)
def test_resident_means_listed_and_not_expired_when_checked(expires: datetime, resident: bool) -> None:
    outcomes = [warmed("m", keep_alive="5m")]
    residency = verify_residency(outcomes, [running("m:latest", expires=expires)], NOW)
    assert residency["m"].resident is resident
    rows = model_rows(["m"], outcomes, residency)
    assert models_status(rows) == (EXIT_OK if resident else EXIT_MODELS_NOT_READY)
    if not resident:
        assert "keep-alive" in (residency["m"].message or "")


def test_a_model_that_unloads_as_it_is_warmed_because_of_a_short_keep_alive_fails_with_that_reason() -> None:
    outcomes = [warmed("m", keep_alive="2s")]
    residency = verify_residency(outcomes, [], NOW)
    assert not residency["m"].resident and "keep-alive (2.00 s) ran out" in (residency["m"].message or "")
    assert models_status(model_rows(["m"], outcomes, residency)) == EXIT_MODELS_NOT_READY


def test_an_expired_entry_of_a_model_asked_to_unload_is_what_was_asked() -> None:
    outcomes = [warmed("m", keep_alive="0")]
    residency = verify_residency(outcomes, [running("m:latest", expires=NOW - timedelta(seconds=1))], NOW)
    assert models_status(model_rows(["m"], outcomes, residency)) == EXIT_OK


def test_models_that_could_not_be_verified_are_not_ready_and_say_so() -> None:
    outcomes = [warmed("a"), warmed("b")]
    rows = model_rows(["a", "b"], outcomes, unverified(outcomes, "/api/ps answered HTTP 500"))
    assert [(row.outcome, row.resident) for row in rows] == [("unverified", None), ("unverified", None)]
    assert all("could not verify" in (row.error or "") for row in rows)
    assert models_status(rows) == EXIT_MODELS_NOT_READY
