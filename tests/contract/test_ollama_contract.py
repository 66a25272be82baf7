"""What the preloader relies on Ollama to do, checked on the fake and on every real version alike.

Each test states one behaviour; where versions differ, the expectation is keyed on the version, so the
fake is held to what each real version was seen doing (tests/real/FINDINGS.md cites these test ids).
"""

from __future__ import annotations

import re
import threading
import time
from datetime import datetime, timezone
from typing import Any

import pytest
import requests

from testkit.real_ollama import SMOLLM2, TINY_BERT, TINY_LLAMA, qualify
from tests.contract.conftest import Server

pytestmark = pytest.mark.contract

# Deterministic one-token requests: assertions are about structure, never about the text.
ONE_TOKEN = {"temperature": 0, "seed": 1, "num_predict": 1}
METRICS = ("total_duration", "load_duration", "prompt_eval_count", "eval_count")


def error(r: requests.Response) -> tuple[int, str]:
    return r.status_code, r.json().get("error", "")


def expires_at(entry: dict[str, Any]) -> datetime:
    # Go writes up to nine fractional digits and the server's zone; Python takes six.
    m = re.fullmatch(r"([\d-]+T[\d:]+)(?:\.(\d+))?(Z|[+-][\d:]+)", entry["expires_at"])
    assert m is not None, entry["expires_at"]
    fraction = f".{m[2][:6]}" if m[2] else ""
    return datetime.fromisoformat(m[1] + fraction + ("+00:00" if m[3] == "Z" else m[3]))


def wait_for(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


# --- errors the preloader maps to its messages ----------------------------------------------------------


def test_a_missing_model_is_404_with_the_name_as_sent_on_generate_and_embed(server: Server) -> None:
    assert error(server.post("/api/generate", {"model": "nope"})) == (404, "model 'nope' not found")
    assert error(server.post("/api/embed", {"model": "nope", "input": "x"})) == (
        404,
        'model "nope" not found, try pulling it first',
    )


def test_a_missing_model_on_show_is_404_naming_it_as_sent_on_0_11_and_normalised_later(server: Server) -> None:
    shown = "nope:latest" if server.at_least("0.32.15") else "nope"
    assert error(server.post("/api/show", {"model": "nope"})) == (404, f"model '{shown}' not found")


def test_an_embedding_only_model_on_generate_is_400_does_not_support_generate(server: Server) -> None:
    expected = (400, f'"{TINY_BERT}" does not support generate')
    assert error(server.post("/api/generate", {"model": TINY_BERT})) == expected
    assert error(server.post("/api/generate", {"model": TINY_BERT, "prompt": "hi"})) == expected


def test_an_option_of_the_wrong_type_is_500_naming_the_option(server: Server) -> None:
    r = server.post("/api/generate", {"model": TINY_LLAMA, "options": {"num_predict": "1"}})
    assert error(r) == (500, 'option "num_predict" must be of type integer')


@pytest.mark.parametrize(
    ("keep_alive", "message"),
    [
        ("-1", 'time: missing unit in duration "-1"'),  # the number -1 is forever, the string is refused
        ("1d", 'time: unknown unit "d" in duration "1d"'),
        ("9999999999h", 'time: invalid duration "9999999999h"'),  # beyond Go's 292 years
        (True, "Unsupported type: 'bool'"),
    ],
)
def test_a_bad_keep_alive_is_400_with_gos_duration_error(server: Server, keep_alive: Any, message: str) -> None:
    for path, extra in (("/api/generate", {}), ("/api/embed", {"input": "x"})):
        r = server.post(path, {"model": TINY_LLAMA, "keep_alive": keep_alive, **extra})
        assert error(r) == (400, message), path


def test_a_keep_alive_number_beyond_292_years_overflows_and_does_not_keep_the_model(server: Server) -> None:
    # 1e10 s is past int64 nanoseconds: Go wraps it to a negative duration that is not "forever".
    r = server.post("/api/generate", {"model": TINY_LLAMA, "keep_alive": 1e10})
    assert r.status_code == 200 and r.json()["done_reason"] == "load", r.text
    assert wait_for(lambda: not server.ps(), 2)
    assert server.post("/api/generate", {"model": TINY_LLAMA, "keep_alive": 9e9}).status_code == 200
    assert expires_at(server.ps()[qualify(TINY_LLAMA)]).year >= 2200  # just below the limit: ~285 years


def test_an_invalid_name_on_generate_is_404_on_0_11_and_400_later(server: Server) -> None:
    expected = (400, "invalid model name") if server.at_least("0.32.15") else (404, "model 'a//b' not found")
    assert error(server.post("/api/generate", {"model": "a//b"})) == expected


# --- /api/show ------------------------------------------------------------------------------------------


def test_show_tells_completion_models_from_embedding_models_by_capabilities(server: Server) -> None:
    for model, capability in ((SMOLLM2, "completion"), (TINY_LLAMA, "completion"), (TINY_BERT, "embedding")):
        r = server.post("/api/show", {"model": model})
        assert r.status_code == 200, r.text
        body = r.json()
        assert capability in body["capabilities"], (model, body["capabilities"])
        assert ("embedding" in body["capabilities"]) == (model == TINY_BERT)
    bert_info = server.post("/api/show", {"model": TINY_BERT}).json()["model_info"]
    assert bert_info["bert.pooling_type"] >= 1  # what the preloader reads when capabilities are missing


def test_show_parent_model_is_the_blob_path_on_0_11_and_empty_later(server: Server) -> None:
    parent = server.post("/api/show", {"model": TINY_LLAMA}).json()["details"]["parent_model"]
    if server.at_least("0.32.15"):
        assert parent == ""
    else:
        assert "/blobs/sha256-" in parent


# --- /api/generate --------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [None, False, True])
def test_an_empty_prompt_only_loads_and_answers_one_object_with_done_reason_load(
    server: Server, stream: bool | None
) -> None:
    body: dict[str, Any] = {"model": TINY_LLAMA}
    if stream is not None:
        body["stream"] = stream
    r = server.post("/api/generate", body)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json"), r.text
    answer = r.json()
    assert answer["done"] is True and answer["done_reason"] == "load" and answer["response"] == ""
    assert answer["model"] == TINY_LLAMA  # echoed as sent
    assert not set(METRICS) & set(answer), answer  # no load_duration: a warmer times the load itself
    assert qualify(TINY_LLAMA) in server.ps()


def test_num_predict_1_generates_exactly_one_token_and_stops_for_length(server: Server) -> None:
    r = server.post("/api/generate", {"model": SMOLLM2, "prompt": "Hi", "stream": False, "options": ONE_TOKEN})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["done"] is True and answer["done_reason"] == "length" and answer["eval_count"] == 1
    assert set(METRICS) <= set(answer), answer
    assert answer["load_duration"] > 0


def test_an_empty_prompt_with_keep_alive_0_unloads_even_an_embedding_model(server: Server) -> None:
    assert server.post("/api/embed", {"model": TINY_BERT, "input": ""}).status_code == 200
    assert qualify(TINY_BERT) in server.ps()
    r = server.post("/api/generate", {"model": TINY_BERT, "keep_alive": 0})
    assert r.status_code == 200 and r.json()["done_reason"] == "unload", r.text
    assert wait_for(lambda: not server.ps(), 5)


@pytest.mark.parametrize("keep_alive", [0.5, "500ms"])
def test_a_sub_second_keep_alive_with_an_empty_prompt_unloads_on_0_11_and_loads_later(
    server: Server, keep_alive: Any
) -> None:
    # 0.11.4 compares whole seconds (`int(Seconds()) == 0`); 0.32.15 compares the duration with 0.
    r = server.post("/api/generate", {"model": TINY_LLAMA, "keep_alive": keep_alive})
    assert r.status_code == 200, r.text
    assert r.json()["done_reason"] == ("load" if server.at_least("0.32.15") else "unload")


def test_embed_with_empty_input_loads_the_model_and_returns_no_vectors(server: Server) -> None:
    r = server.post("/api/embed", {"model": TINY_BERT, "input": ""})
    assert r.status_code == 200 and r.json()["embeddings"] == [], r.text
    assert qualify(TINY_BERT) in server.ps()


# --- /api/ps and keep-alive -----------------------------------------------------------------------------


def test_ps_lists_a_loaded_model_with_the_fields_the_preloader_reads(server: Server) -> None:
    server.post("/api/generate", {"model": TINY_LLAMA, "options": {"num_ctx": 1024}})
    entry = server.ps()[qualify(TINY_LLAMA)]
    assert {"name", "model", "size", "digest", "details", "expires_at", "size_vram", "context_length"} <= set(entry)
    assert entry["size"] > 0 and isinstance(entry["size_vram"], int)
    assert entry["context_length"] == 1024


def test_ps_context_length_is_the_requested_num_ctx_uncapped_on_0_11_and_capped_at_training_later(
    server: Server,
) -> None:
    assert server.post("/api/generate", {"model": TINY_LLAMA, "options": {"num_ctx": 99999}}).status_code == 200
    trained = 2048  # tiny-llama's context_length (gguf_models.TinyLlamaSpec)
    expected = trained if server.at_least("0.32.15") else 99999
    assert server.ps()[qualify(TINY_LLAMA)]["context_length"] == expected


@pytest.mark.parametrize(("keep_alive", "minutes"), [(-1, None), ("5m", 5), (None, 5)])
def test_ps_expires_at_is_forever_for_minus_1_and_finite_otherwise(
    server: Server, keep_alive: Any, minutes: int | None
) -> None:
    body: dict[str, Any] = {"model": TINY_LLAMA}
    if keep_alive is not None:
        body["keep_alive"] = keep_alive
    before = datetime.now(timezone.utc)
    assert server.post("/api/generate", body).status_code == 200
    expires = expires_at(server.ps()[qualify(TINY_LLAMA)])
    if minutes is None:
        assert expires.year >= 2200, expires  # Go's maximum duration: about 292 years
    else:
        seconds = (expires - before).total_seconds()
        assert minutes * 60 - 5 <= seconds <= minutes * 60 + 5, seconds


def test_a_model_is_gone_from_ps_once_its_keep_alive_has_passed(server: Server) -> None:
    assert server.post("/api/generate", {"model": TINY_LLAMA, "keep_alive": "1s"}).status_code == 200
    assert qualify(TINY_LLAMA) in server.ps()
    assert wait_for(lambda: not server.ps(), 5)


def test_keep_alive_changes_only_with_requests_that_set_it(server: Server) -> None:
    def expiry_year() -> int:
        return expires_at(server.ps()[qualify(TINY_LLAMA)]).year

    pin = server.post("/api/generate", {"model": TINY_LLAMA, "keep_alive": -1})
    assert pin.status_code == 200 and expiry_year() >= 2200, (pin.text, server.ps())
    r = server.post("/api/generate", {"model": TINY_LLAMA, "prompt": "a", "stream": False, "options": ONE_TOKEN})
    assert r.status_code == 200, r.text
    assert expiry_year() >= 2200, server.ps()  # left alone
    assert server.post("/api/generate", {"model": TINY_LLAMA, "keep_alive": "10m"}).status_code == 200
    assert expiry_year() < 2200, server.ps()  # overwritten: an app's 5m undoes a pin


def test_a_second_model_evicts_the_first_on_a_one_slot_server_despite_keep_alive_forever(
    single_slot: Server,
) -> None:
    for model in (TINY_LLAMA, TINY_BERT):
        path, body = ("/api/embed", {"input": ""}) if model == TINY_BERT else ("/api/generate", {})
        assert single_slot.post(path, {"model": model, "keep_alive": -1, **body}).status_code == 200
    assert list(single_slot.ps()) == [qualify(TINY_BERT)]


def test_different_runner_options_reload_and_the_same_ones_do_not(server: Server) -> None:
    def load_seconds(num_ctx: int) -> float:
        body = {"model": TINY_LLAMA, "prompt": "a", "stream": False, "options": {**ONE_TOKEN, "num_ctx": num_ctx}}
        return float(server.post("/api/generate", body).json()["load_duration"]) / 1e9

    load_seconds(1024)
    same = load_seconds(1024)
    other = load_seconds(512)
    assert server.ps()[qualify(TINY_LLAMA)]["context_length"] == 512
    assert same < other, (same, other)


# --- loading --------------------------------------------------------------------------------------------


def test_ps_lists_a_model_while_it_loads_before_0_30_and_only_once_ready_later(server: Server) -> None:
    answered: list[float] = []

    def load() -> None:
        server.post("/api/generate", {"model": SMOLLM2})
        answered.append(time.monotonic())

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    first_listed = None
    deadline = time.monotonic() + 60
    while not answered and time.monotonic() < deadline:
        if first_listed is None and qualify(SMOLLM2) in server.ps():
            first_listed = time.monotonic()
        time.sleep(0.01)
    worker.join(5)
    # Observed: 0.11.4 lists SmolLM2 ≈0.25 s before its load answers; 0.32.15 only once it has answered.
    listed_early = first_listed is not None and first_listed < answered[0] - 0.1
    assert listed_early is (not server.at_least("0.30.0")), (first_listed, answered)
    assert qualify(SMOLLM2) in server.ps()


def test_a_client_hanging_up_mid_load_aborts_the_load(server: Server) -> None:
    with pytest.raises(requests.ReadTimeout):
        server.session.post(server.base_url + "/api/generate", json={"model": SMOLLM2}, timeout=(5, 0.15))
    server.session.close()  # the hang-up: requests keeps the socket pooled otherwise
    time.sleep(1.5)  # longer than the load would take
    assert qualify(SMOLLM2) not in server.ps()
    if server.fake is not None:
        assert server.fake.cancelled_loads == [qualify(SMOLLM2)]
    else:
        assert "aborting load" in server.log_text()
