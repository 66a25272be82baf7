"""Facts about the real servers that the fake does not model (routes the preloader does not use, model
contents, logs), kept as tests so FINDINGS.md can cite them and a new version that changes them is noticed.
"""

from __future__ import annotations

import pytest

from testkit.gguf_models import sha256_file, write_tiny_llama
from testkit.real_ollama import SMOLLM2, TINY_BERT, TINY_LLAMA, RealOllama

pytestmark = pytest.mark.real

ONE_TOKEN = {"temperature": 0, "seed": 1, "num_predict": 1}


def version_of(server: RealOllama) -> tuple[int, ...]:
    return tuple(int(part) for part in server.request("GET", "/api/version").json()["version"].split("."))


def test_chat_names_a_missing_model_differently_after_0_11(ollama: RealOllama) -> None:
    r = ollama.post("/api/chat", {"model": "nope", "messages": []})
    newer = version_of(ollama) >= (0, 32)
    expected = "model 'nope' not found" if newer else 'model "nope" not found, try pulling it first'
    assert (r.status, r.json()["error"]) == (404, expected)
    bert = ollama.post("/api/chat", {"model": TINY_BERT, "messages": [{"role": "user", "content": "hi"}]})
    assert (bert.status, bert.json()["error"]) == (400, f'"{TINY_BERT}" does not support chat')


def test_create_from_a_gguf_keeps_the_uploaded_blob_on_0_11_and_rewrites_it_later(
    ollama: RealOllama, tmp_path_factory: pytest.TempPathFactory
) -> None:
    uploaded = sha256_file(write_tiny_llama(tmp_path_factory.mktemp("gguf")))
    modelfile = ollama.post("/api/show", {"model": TINY_LLAMA}).json()["modelfile"]
    kept = f"sha256-{uploaded}" in modelfile
    assert kept is (version_of(ollama) < (0, 32)), modelfile[:400]


def test_tags_report_capabilities_and_lengths_only_on_newer_servers(ollama: RealOllama) -> None:
    entry = next(m for m in ollama.request("GET", "/api/tags").json()["models"] if m["name"] == SMOLLM2)
    if version_of(ollama) >= (0, 32):
        assert entry["capabilities"] == ["completion"]
        assert entry["details"]["context_length"] == 8192 and entry["details"]["embedding_length"] == 576
    else:
        assert "capabilities" not in entry and "context_length" not in entry["details"]


def test_a_one_token_reply_that_is_not_valid_utf8_is_an_empty_unfinished_200_on_0_32(ollama: RealOllama) -> None:
    # tiny-llama answers "Hi" with a lone byte token. 0.11.4 returns it as usual; 0.32.15 cannot parse it
    # and answers 200 with a zero-valued object. A warmer must read load success from /api/ps, not this body.
    r = ollama.post("/api/generate", {"model": TINY_LLAMA, "prompt": "Hi", "stream": False, "options": ONE_TOKEN})
    assert r.status == 200, r.text
    body = r.json()
    if version_of(ollama) >= (0, 32):
        assert body == {"model": "", "created_at": "0001-01-01T00:00:00Z", "response": "", "done": False}
    else:
        assert body["done"] is True and body["done_reason"] == "length"
    assert "tiny-llama:latest" in ollama.loaded_names()  # loaded either way


def test_start_up_offline_logs_warnings_about_ollama_com_only_on_newer_servers(ollama: RealOllama) -> None:
    warned = "https://ollama.com" in ollama.log_text()
    assert warned is (version_of(ollama) >= (0, 32))


def test_eval_duration_of_a_one_token_generation_is_a_placeholder_on_0_32(ollama: RealOllama) -> None:
    r = ollama.post("/api/generate", {"model": SMOLLM2, "prompt": "Hi", "stream": False, "options": ONE_TOKEN})
    body = r.json()
    assert body["eval_count"] == 1
    if version_of(ollama) >= (0, 32):
        assert body["eval_duration"] == 1000  # 1 µs, whatever the machine: not a measurement
    else:
        assert body["eval_duration"] > 10_000
