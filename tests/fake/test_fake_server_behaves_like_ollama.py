"""Pins the fake Ollama server to the behaviour of the real one, so tests built on it stay meaningful."""

from __future__ import annotations

import contextlib
import json
import math
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from tests.support.fake_ollama import BUSY_ERROR, FakeOllama, go_parse_duration, normalize_name, parse_name

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")
METRICS = ("total_duration", "load_duration", "prompt_eval_count", "eval_count", "eval_duration")
# The version the reference (read from source) describes; the default fake is the observed v0.11.4.
REFERENCE_VERSION = "0.33.0-rc2"


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    server = FakeOllama()
    server.add_model("llama3.2")
    server.add_model("nomic-embed-text", embedding=True, family="nomic-bert")
    server.add_model("huihui_ai/qwen2.5-abliterate:14b")
    with server:
        yield server


def post(fake: FakeOllama, path: str, body: Any = None, *, raw: bytes | None = None, **kw: Any) -> requests.Response:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    return requests.post(fake.url + path, data=data, timeout=kw.pop("timeout", 5), **kw)


def wait_until(predicate: Callable[[], bool], timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def ps_names(fake: FakeOllama) -> list[str]:
    return [m["name"] for m in requests.get(fake.url + "/api/ps", timeout=5).json()["models"]]


# -- readiness and routing ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status", "content_type", "body"),
    [
        ("GET", "/", 200, "text/plain; charset=utf-8", "Ollama is running"),
        ("HEAD", "/", 200, "text/plain; charset=utf-8", ""),
        ("GET", "/api/version", 200, "application/json; charset=utf-8", '{"version":"0.11.4"}'),
        ("HEAD", "/api/version", 200, "application/json; charset=utf-8", ""),
        ("HEAD", "/api/tags", 200, "application/json; charset=utf-8", ""),
        ("GET", "/api/ps", 200, "application/json; charset=utf-8", '{"models":[]}'),
        ("HEAD", "/api/ps", 405, "text/plain", ""),
        ("POST", "/api/version", 405, "text/plain", "405 method not allowed"),
        ("GET", "/api/generate", 405, "text/plain", "405 method not allowed"),
        ("GET", "/api/nothing", 404, "text/plain", "404 page not found"),
        ("GET", "/api/status", 404, "text/plain", "404 page not found"),  # only since 0.16.2
    ],
)
def test_routes_answer_with_ollamas_status_type_and_body(
    fake: FakeOllama, method: str, path: str, status: int, content_type: str, body: str
) -> None:
    r = requests.request(method, fake.url + path, timeout=5)
    assert (r.status_code, r.headers["Content-Type"], r.text) == (status, content_type, body)


def test_foreign_host_header_is_refused_with_empty_403(fake: FakeOllama) -> None:
    r = requests.get(fake.url + "/", headers={"Host": "example.com"}, timeout=5)
    assert (r.status_code, r.content) == (403, b"")
    assert requests.get(fake.url + "/", headers={"Host": "ollama.internal"}, timeout=5).status_code == 200


def test_every_request_is_recorded_with_parsed_body(fake: FakeOllama) -> None:
    post(fake, "/api/show", {"model": "llama3.2"}, headers={"Authorization": "Bearer k"})
    (rec,) = fake.requests_to("/api/show")
    assert (rec.method, rec.body, rec.header("authorization")) == ("POST", {"model": "llama3.2"}, "Bearer k")


# -- error table ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "raw", "status", "error"),
    [
        ("/api/generate", b"", 400, "missing request body"),
        ("/api/generate", b'{"model":', 400, "unexpected EOF"),
        (
            "/api/generate",
            b'{"model":5}',
            400,
            "json: cannot unmarshal number into Go struct field GenerateRequest.model of type string",
        ),
        ("/api/generate", b'{"model":"llama3.2","keep_alive":"300"}', 400, 'time: missing unit in duration "300"'),
        ("/api/generate", b'{"model":"llama3.2","keep_alive":"-1"}', 400, 'time: missing unit in duration "-1"'),
        ("/api/generate", b'{"model":"llama3.2","keep_alive":"1d"}', 400, 'time: unknown unit "d" in duration "1d"'),
        ("/api/generate", b'{"model":"llama3.2","keep_alive":""}', 400, 'time: invalid duration ""'),
        ("/api/generate", b'{"model":"llama3.2","keep_alive":true}', 400, "Unsupported type: 'bool'"),
        ("/api/generate", b'{"model":"llama3.2","keep_alive":{}}', 400, "Unsupported type: 'map[string]interface {}'"),
        ("/api/generate", b'{"model":"llama3.2","keep_alive":[]}', 400, "Unsupported type: '[]interface {}'"),
        ("/api/generate", b'{"prompt":"hi"}', 404, "model '' not found"),
        # v0.11.4 answers an invalid name as a missing one (the reference's 400 is for newer servers)
        ("/api/generate", b'{"model":"a//b"}', 404, "model 'a//b' not found"),
        ("/api/generate", b'{"model":"a/b/c/d"}', 404, "model 'a/b/c/d' not found"),
        ("/api/generate", b'{"model":"llama3.2:"}', 404, "model 'llama3.2:' not found"),
        ("/api/generate", b'{"model":"ns.x/model"}', 404, "model 'ns.x/model' not found"),
        ("/api/generate", b'{"model":" llama3.2"}', 404, "model ' llama3.2' not found"),  # no trimming either
        ("/api/generate", b'{"model":"llama3.1"}', 404, "model 'llama3.1' not found"),
        (
            "/api/generate",
            b'{"model":"llama3.1","keep_alive":0}',
            404,
            "model 'llama3.1' not found",
        ),  # unloading a missing model is still a 404
        (
            "/api/generate",
            b'{"model":"nomic-embed-text","prompt":"x"}',
            400,
            '"nomic-embed-text" does not support generate',
        ),
        ("/api/generate", b'{"model":"nomic-embed-text"}', 400, '"nomic-embed-text" does not support generate'),
        ("/api/generate", b'{"model":"llama3.2","think":true}', 400, '"llama3.2" does not support thinking'),
        (
            "/api/generate",
            b'{"model":"llama3.2","options":{"num_ctx":"big"}}',
            500,
            'option "num_ctx" must be of type integer',
        ),
        ("/api/generate", b'{"model":"llama3.2","top_logprobs":21}', 400, "top_logprobs must be between 0 and 20"),
        ("/api/show", b'{"verbose":true}', 400, "model is required"),
        ("/api/show", b'{"model":"bad name"}', 400, "invalid model name"),
        # v0.11.4 echoes the name as sent; the reference's normalised `llama3.1:latest` is for newer servers
        ("/api/show", b'{"model":"llama3.1"}', 404, "model 'llama3.1' not found"),
        ("/api/show", b'{"name":"llama3.1"}', 404, "model 'llama3.1' not found"),
        (
            "/api/show",
            b'{"model":"registry.ollama.ai/library/gone"}',
            404,
            "model 'registry.ollama.ai/library/gone' not found",
        ),
        ("/api/embed", b'{"model":"llama3.1"}', 404, 'model "llama3.1" not found, try pulling it first'),
        ("/api/embed", b'{"model":""}', 404, "model '' not found"),
        ("/api/embed", b'{"model":"nomic-embed-text","input":5}', 400, "invalid input type"),
        ("/api/embed", b'{"model":"nomic-embed-text","input":["a",1]}', 400, "invalid input type"),
        ("/api/pull", b'{"model":"bad name"}', 400, "invalid model name"),
        ("/api/pull", b'{"model":"nope","stream":false}', 500, "pull model manifest: file does not exist"),
    ],
)
def test_errors_carry_ollamas_status_and_exact_text(
    fake: FakeOllama, path: str, raw: bytes, status: int, error: str
) -> None:
    r = post(fake, path, raw=raw)
    assert (r.status_code, r.json()) == (status, {"error": error})
    assert r.headers["Content-Type"].startswith("application/json")


@pytest.mark.parametrize(
    ("path", "raw", "status", "error"),
    [
        ("/api/generate", b'{"model":"a//b"}', 400, "invalid model name"),
        ("/api/generate", b'{"model":"a/b/c/d"}', 400, "invalid model name"),
        ("/api/generate", b'{"prompt":"hi"}', 404, "model '' not found"),
        ("/api/show", b'{"model":"llama3.1"}', 404, "model 'llama3.1:latest' not found"),
        ("/api/show", b'{"model":"registry.ollama.ai/library/gone"}', 404, "model 'gone:latest' not found"),
    ],
)
def test_newer_servers_answer_names_as_the_reference_says(path: str, raw: bytes, status: int, error: str) -> None:
    with FakeOllama(version=REFERENCE_VERSION) as fake:
        r = post(fake, path, raw=raw)
    assert (r.status_code, r.json()) == (status, {"error": error})


# -- generate -------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [None, True, False])
def test_generate_with_empty_prompt_loads_and_answers_one_object_without_metrics(
    fake: FakeOllama, stream: bool | None
) -> None:
    body: dict[str, Any] = {"model": "llama3.2"}
    if stream is not None:
        body["stream"] = stream
    r = post(fake, "/api/generate", body)
    assert r.headers["Content-Type"] == "application/json; charset=utf-8"
    data = r.json()
    assert RFC3339_UTC.match(data.pop("created_at"))
    assert data == {"model": "llama3.2", "response": "", "done": True, "done_reason": "load"}
    assert ps_names(fake) == ["llama3.2:latest"]


def test_generate_unload_comes_before_the_capability_check(fake: FakeOllama) -> None:
    post(fake, "/api/embed", {"model": "nomic-embed-text"})
    r = post(fake, "/api/generate", {"model": "nomic-embed-text", "keep_alive": 0})
    assert (r.status_code, r.json()["done_reason"]) == (200, "unload")
    assert ps_names(fake) == []


def test_generate_echoes_model_verbatim_and_looks_it_up_case_insensitively(fake: FakeOllama) -> None:
    r = post(fake, "/api/generate", {"model": "LLAMA3.2:Latest"})
    assert (r.status_code, r.json()["model"]) == (200, "LLAMA3.2:Latest")
    assert ps_names(fake) == ["llama3.2:latest"]


def test_newer_servers_also_trim_the_model_name_but_echo_it_verbatim() -> None:
    with FakeOllama(version=REFERENCE_VERSION) as fake:
        fake.add_model("llama3.2")
        r = post(fake, "/api/generate", {"model": "  LLAMA3.2:Latest "})
        assert (r.status_code, r.json()["model"]) == (200, "  LLAMA3.2:Latest ")
        assert ps_names(fake) == ["llama3.2:latest"]


def test_generate_without_stream_returns_text_and_nanosecond_metrics(fake: FakeOllama) -> None:
    r = post(
        fake, "/api/generate", {"model": "llama3.2", "prompt": "hi", "stream": False, "options": {"num_predict": 1}}
    )
    data = r.json()
    assert (data["done"], data["done_reason"], data["eval_count"]) == (True, "length", 1)
    assert data["response"] and all(isinstance(data[k], int) and data[k] > 0 for k in METRICS)
    assert data["load_duration"] <= data["total_duration"] < 5 * 10**9


def test_generate_streams_ndjson_chunks_then_a_final_chunk_with_metrics(fake: FakeOllama) -> None:
    r = post(fake, "/api/generate", {"model": "llama3.2", "prompt": "hi", "options": {"num_predict": 3}})
    assert r.headers["Content-Type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert [line["done"] for line in lines] == [False, False, False, True]
    assert set(lines[0]) == {"model", "created_at", "response", "done"}
    assert lines[-1]["done_reason"] == "length" and all(k in lines[-1] for k in METRICS)


@pytest.mark.parametrize("num_predict", [0, -1])
def test_num_predict_zero_means_no_limit_like_minus_one(fake: FakeOllama, num_predict: int) -> None:
    body = {"model": "llama3.2", "prompt": "x", "stream": False, "options": {"num_predict": num_predict}}
    data = post(fake, "/api/generate", body).json()
    assert data["done_reason"] == "stop" and data["eval_count"] > 5 and data["response"]


def test_unbounded_generation_is_measurably_slower_than_one_token(fake: FakeOllama) -> None:
    post(fake, "/api/generate", {"model": "llama3.2"})
    one = post(
        fake, "/api/generate", {"model": "llama3.2", "prompt": "x", "stream": False, "options": {"num_predict": 1}}
    ).json()
    unbounded = post(fake, "/api/generate", {"model": "llama3.2", "prompt": "x", "stream": False}).json()
    assert unbounded["eval_count"] > one["eval_count"] and unbounded["done_reason"] == "stop"
    assert unbounded["total_duration"] > 10 * one["eval_duration"]


def test_load_duration_reports_the_load_only_for_the_request_that_loaded(fake: FakeOllama) -> None:
    fake.add_model("slowish", load_delay=0.2)
    first = post(
        fake, "/api/generate", {"model": "slowish", "prompt": "x", "stream": False, "options": {"num_predict": 1}}
    ).json()
    second = post(
        fake, "/api/generate", {"model": "slowish", "prompt": "x", "stream": False, "options": {"num_predict": 1}}
    ).json()
    assert first["load_duration"] >= 0.2e9 > 0.05e9 > second["load_duration"]


def test_load_failure_is_a_500_and_leaves_nothing_loaded(fake: FakeOllama) -> None:
    fake.add_model("huge", load_error="model requires more system memory (64 GiB) than is available (8 GiB)")
    r = post(fake, "/api/generate", {"model": "huge"})
    assert (r.status_code, r.json()["error"]) == (
        500,
        "model requires more system memory (64 GiB) than is available (8 GiB)",
    )
    assert ps_names(fake) == [] and fake.load_count("huge") == 0


# -- embed ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [{}, {"input": ""}, {"input": []}])
def test_embed_with_empty_input_loads_and_returns_no_vectors_or_metrics(fake: FakeOllama, body: dict) -> None:
    r = post(fake, "/api/embed", {"model": "nomic-embed-text", **body})
    assert (r.status_code, r.json()) == (200, {"model": "nomic-embed-text", "embeddings": []})
    assert ps_names(fake) == ["nomic-embed-text:latest"]


def test_embed_returns_one_normalised_deterministic_vector_per_input(fake: FakeOllama) -> None:
    data = post(fake, "/api/embed", {"model": "nomic-embed-text", "input": ["a", "b"]}).json()
    again = post(fake, "/api/embed", {"model": "nomic-embed-text", "input": "a"}).json()
    assert len(data["embeddings"]) == 2 and data["embeddings"][0] == again["embeddings"][0]
    assert all(abs(math.fsum(x * x for x in vec) - 1) < 1e-5 for vec in data["embeddings"])
    assert data["prompt_eval_count"] == 2 and data["total_duration"] >= data["load_duration"] > 0


def test_embed_also_loads_a_completion_model(fake: FakeOllama) -> None:
    assert post(fake, "/api/embed", {"model": "llama3.2", "input": "x"}).status_code == 200
    assert ps_names(fake) == ["llama3.2:latest"]


# -- show -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "capabilities", "pooling"),
    [("llama3.2", ["completion"], False), ("nomic-embed-text", ["embedding"], True)],
)
def test_show_reports_details_model_info_and_capabilities(
    fake: FakeOllama, model: str, capabilities: list[str], pooling: bool
) -> None:
    data = post(fake, "/api/show", {"name": model}).json()
    arch = data["model_info"]["general.architecture"]
    assert data["capabilities"] == capabilities and data["details"]["format"] == "gguf"
    assert (f"{arch}.pooling_type" in data["model_info"]) is pooling
    assert RFC3339_UTC.match(data["modified_at"])


def test_show_parent_model_is_the_blob_path_for_a_model_created_from_a_gguf_file(fake: FakeOllama) -> None:
    fake.add_model("tiny-llama", from_gguf=True)
    parent = post(fake, "/api/show", {"model": "tiny-llama"}).json()["details"]["parent_model"]
    assert re.fullmatch(r"/.*/models/blobs/sha256-[0-9a-f]{64}", parent)
    assert post(fake, "/api/show", {"model": "llama3.2"}).json()["details"]["parent_model"] == ""
    post(fake, "/api/generate", {"model": "tiny-llama"})
    assert requests.get(fake.url + "/api/ps", timeout=5).json()["models"][0]["details"]["parent_model"] == ""


def test_legacy_show_has_no_capabilities_but_pooling_type_marks_embedding_models() -> None:
    with FakeOllama(legacy_show=True) as fake:
        fake.add_model("nomic-embed-text", embedding=True, family="nomic-bert")
        data = post(fake, "/api/show", {"model": "nomic-embed-text"}).json()
    assert "capabilities" not in data and "nomic-bert.pooling_type" in data["model_info"]


# -- ps, keep_alive, scheduler --------------------------------------------------------------------


def test_ps_and_tags_report_display_shortest_names(fake: FakeOllama) -> None:
    post(fake, "/api/generate", {"model": "registry.ollama.ai/huihui_ai/qwen2.5-abliterate:14b"})
    (entry,) = requests.get(fake.url + "/api/ps", timeout=5).json()["models"]
    assert entry["name"] == entry["model"] == "huihui_ai/qwen2.5-abliterate:14b"
    assert set(entry) == {"name", "model", "size", "digest", "details", "expires_at", "size_vram", "context_length"}
    assert re.fullmatch(r"[0-9a-f]{64}", entry["digest"]) and RFC3339_UTC.match(entry["expires_at"])
    tags = {m["name"] for m in requests.get(fake.url + "/api/tags", timeout=5).json()["models"]}
    assert tags == {"llama3.2:latest", "nomic-embed-text:latest", "huihui_ai/qwen2.5-abliterate:14b"}


@pytest.mark.parametrize(("keep_alive", "year_from_now"), [(-1, 292), ("-1m", 292), ("24h", 0), (42.5, 0)])
def test_ps_expires_at_follows_keep_alive(fake: FakeOllama, keep_alive: Any, year_from_now: int) -> None:
    post(fake, "/api/generate", {"model": "llama3.2", "keep_alive": keep_alive})
    expires = requests.get(fake.url + "/api/ps", timeout=5).json()["models"][0]["expires_at"]
    assert int(expires[:4]) - time.gmtime().tm_year in (year_from_now, year_from_now + 1)


def test_keep_alive_is_only_changed_by_requests_that_set_it_and_expiry_unloads(fake: FakeOllama) -> None:
    post(fake, "/api/generate", {"model": "llama3.2", "keep_alive": -1})
    post(fake, "/api/generate", {"model": "llama3.2"})
    assert fake.loaded()["llama3.2:latest"].keep_alive == math.inf
    post(fake, "/api/generate", {"model": "llama3.2", "keep_alive": "10m"})
    assert fake.loaded()["llama3.2:latest"].keep_alive == 600
    short = {"model": "llama3.2", "prompt": "x", "keep_alive": 0.15, "stream": False, "options": {"num_predict": 1}}
    post(fake, "/api/generate", short)
    assert fake.loaded()["llama3.2:latest"].keep_alive == pytest.approx(0.15)
    assert wait_until(lambda: ps_names(fake) == [], timeout=1.0)


@pytest.mark.parametrize("keep_alive", [0.5, "500ms", 0.999, "0s"])
def test_sub_second_keep_alive_with_an_empty_prompt_unloads_on_0_11_4(fake: FakeOllama, keep_alive: Any) -> None:
    post(fake, "/api/generate", {"model": "llama3.2", "keep_alive": -1})
    r = post(fake, "/api/generate", {"model": "llama3.2", "keep_alive": keep_alive})
    assert (r.status_code, r.json()["done_reason"]) == (200, "unload")
    assert ps_names(fake) == []


def test_one_second_keep_alive_with_an_empty_prompt_only_loads(fake: FakeOllama) -> None:
    r = post(fake, "/api/generate", {"model": "llama3.2", "keep_alive": 1})
    assert r.json()["done_reason"] == "load" and ps_names(fake) == ["llama3.2:latest"]


def test_sub_second_keep_alive_with_a_prompt_is_gone_within_half_a_second(fake: FakeOllama) -> None:
    body = {"model": "llama3.2", "prompt": "x", "keep_alive": "500ms", "stream": False, "options": {"num_predict": 1}}
    r = post(fake, "/api/generate", body)
    assert (r.status_code, r.json()["done_reason"]) == (200, "length")
    assert wait_until(lambda: ps_names(fake) == [], timeout=0.6)
    assert fake.load_count("llama3.2") == 1


def test_newer_servers_unload_only_on_a_zero_keep_alive() -> None:
    with FakeOllama(version=REFERENCE_VERSION) as fake:
        fake.add_model("llama3.2")
        r = post(fake, "/api/generate", {"model": "llama3.2", "keep_alive": "500ms"})
        assert r.json()["done_reason"] == "load"
        assert fake.loaded()["llama3.2:latest"].keep_alive == pytest.approx(0.5)


def test_keep_alive_zero_with_a_prompt_unloads_once_idle(fake: FakeOllama) -> None:
    post(
        fake,
        "/api/generate",
        {"model": "llama3.2", "prompt": "x", "keep_alive": 0, "stream": False, "options": {"num_predict": 1}},
    )
    assert ps_names(fake) == [] and fake.load_count("llama3.2") == 1


def test_new_load_uses_the_server_default_keep_alive() -> None:
    with FakeOllama(default_keep_alive=0.1) as fake:
        fake.add_model("m")
        post(fake, "/api/generate", {"model": "m"})
        assert fake.loaded()["m:latest"].keep_alive == pytest.approx(0.1)
        assert wait_until(lambda: ps_names(fake) == [], timeout=1.0)


def test_different_runner_options_reload_and_same_options_do_not(fake: FakeOllama) -> None:
    post(fake, "/api/generate", {"model": "llama3.2", "options": {"num_ctx": 2048}})
    post(fake, "/api/generate", {"model": "llama3.2", "options": {"num_ctx": 2048, "temperature": 0}})
    assert fake.load_count("llama3.2") == 1
    post(fake, "/api/generate", {"model": "llama3.2", "options": {"num_ctx": 8192}})
    assert fake.load_count("llama3.2:latest") == 2
    assert fake.loaded()["llama3.2:latest"].options["num_ctx"] == 8192


@pytest.mark.parametrize(("num_ctx", "shown"), [(None, 4096), (1024, 1024), (99999, 99999)])
def test_ps_context_length_is_the_runners_num_ctx_uncapped_on_0_11_4(num_ctx: int | None, shown: int) -> None:
    with FakeOllama(default_num_ctx=4096) as fake:
        fake.add_model("small", context_length=2048)
        fake.add_model("bert", embedding=True, context_length=512)
        options = {} if num_ctx is None else {"num_ctx": num_ctx}
        post(fake, "/api/generate", {"model": "small", "options": options})
        post(fake, "/api/embed", {"model": "bert"})
        models = {m["name"]: m for m in requests.get(fake.url + "/api/ps", timeout=5).json()["models"]}
        assert models["small:latest"]["context_length"] == shown
        assert models["bert:latest"]["context_length"] == 4096  # trained for 512, still shows the default
        assert fake.loaded()["small:latest"].context_length == shown


def test_newer_servers_cap_ps_context_length_at_the_trained_context() -> None:
    with FakeOllama(version=REFERENCE_VERSION) as fake:
        fake.add_model("small", context_length=2048)
        post(fake, "/api/generate", {"model": "small", "options": {"num_ctx": 99999}})
        assert requests.get(fake.url + "/api/ps", timeout=5).json()["models"][0]["context_length"] == 2048
        assert fake.loaded()["small:latest"].context_length == 2048


def test_eviction_drops_the_shortest_keep_alive_then_the_first_name() -> None:
    with FakeOllama(max_loaded=2) as fake:
        for name in ("a", "b", "c", "d"):
            fake.add_model(name)
        post(fake, "/api/generate", {"model": "a", "keep_alive": -1})
        post(fake, "/api/generate", {"model": "b", "keep_alive": "10m"})
        post(fake, "/api/generate", {"model": "c", "keep_alive": "1h"})
        assert sorted(fake.loaded()) == ["a:latest", "c:latest"]  # b had the shortest keep-alive
        post(fake, "/api/generate", {"model": "b", "keep_alive": "1h"})
        assert sorted(fake.loaded()) == ["a:latest", "b:latest"]  # c and b tie; "b" < "c" keeps b
        post(fake, "/api/generate", {"model": "d", "keep_alive": -1})
        assert sorted(fake.loaded()) == ["a:latest", "d:latest"]  # b's 1h is shorter than forever
        post(fake, "/api/generate", {"model": "c", "keep_alive": -1})
        assert sorted(fake.loaded()) == ["c:latest", "d:latest"]  # keep_alive -1 does not guarantee residency


def test_evict_simulates_the_scheduler_dropping_a_model(fake: FakeOllama) -> None:
    post(fake, "/api/generate", {"model": "llama3.2", "keep_alive": -1})
    fake.evict("llama3.2")
    assert ps_names(fake) == []


def test_loads_are_serialised(fake: FakeOllama) -> None:
    fake.add_model("m1", load_delay=0.2)
    fake.add_model("m2", load_delay=0.2)
    start = time.monotonic()
    threads = [threading.Thread(target=post, args=(fake, "/api/generate", {"model": m})) for m in ("m1", "m2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.monotonic() - start >= 0.4
    assert fake.load_count("m1") == fake.load_count("m2") == 1


def test_request_for_a_loading_model_waits_and_does_not_reload(fake: FakeOllama) -> None:
    fake.add_model("m", load_delay=0.2)
    threads = [threading.Thread(target=post, args=(fake, "/api/generate", {"model": "m"})) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert fake.load_count("m") == 1


@pytest.mark.parametrize(
    ("kwargs", "listed"),
    [
        ({}, True),  # the default fake is v0.11.4, which lists a model while it loads
        ({"version": "0.29.9"}, True),
        ({"version": "0.30.0"}, False),
        ({"version": REFERENCE_VERSION}, False),
        ({"ps_lists_loading": False}, False),  # the explicit switch wins over the version
        ({"version": REFERENCE_VERSION, "ps_lists_loading": True}, True),
    ],
)
def test_a_loading_model_shows_in_ps_only_on_old_servers(kwargs: dict[str, Any], listed: bool) -> None:
    with FakeOllama(**kwargs) as fake:
        assert fake.ps_lists_loading is listed
        fake.add_model("m", load_delay=0.3)
        worker = threading.Thread(target=post, args=(fake, "/api/generate", {"model": "m"}))
        worker.start()
        time.sleep(0.1)
        assert ps_names(fake) == (["m:latest"] if listed else [])
        assert fake.loaded() == {}
        worker.join()
        assert ps_names(fake) == ["m:latest"]


def test_client_hanging_up_mid_load_cancels_the_load(fake: FakeOllama) -> None:
    fake.add_model("slow", load_delay=1.0)
    with pytest.raises(requests.ReadTimeout):
        post(fake, "/api/generate", {"model": "slow"}, timeout=(1, 0.2))
    assert wait_until(lambda: fake.cancelled_loads == ["slow:latest"], timeout=1.0)
    assert ps_names(fake) == [] and fake.load_count("slow") == 0


# -- pull -----------------------------------------------------------------------------------------


def test_pull_of_a_pullable_model_streams_progress_and_creates_it() -> None:
    with FakeOllama(pullable=["llama3.2"]) as fake:
        r = post(fake, "/api/pull", {"model": "llama3.2"})
        statuses = [json.loads(line)["status"] for line in r.text.splitlines()]
        assert r.headers["Content-Type"] == "application/x-ndjson"
        assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
        assert statuses[-4:-1] == ["verifying sha256 digest", "writing manifest", "removing unused layers"]
        assert any(s.startswith("pulling ") and s != "pulling manifest" for s in statuses)
        assert post(fake, "/api/show", {"model": "llama3.2"}).status_code == 200
        assert post(fake, "/api/pull", {"model": "llama3.2", "stream": False}).json() == {"status": "success"}


def test_pull_of_an_unknown_model_fails_inside_a_200_stream(fake: FakeOllama) -> None:
    r = post(fake, "/api/pull", {"model": "nope"})
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert r.status_code == 200
    assert lines == [{"status": "pulling manifest"}, {"error": "pull model manifest: file does not exist"}]


# -- faults and startup ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error", "expected"),
    [(503, None, BUSY_ERROR), (499, None, "request canceled"), (500, "boom", "boom")],
)
def test_fail_answers_the_next_requests_to_that_path_then_recovers(
    fake: FakeOllama, status: int, error: str | None, expected: str
) -> None:
    fake.fail("/api/generate", status, error, times=2)
    results = [post(fake, "/api/generate", {"model": "llama3.2"}) for _ in range(3)]
    assert [r.status_code for r in results] == [status, status, 200]
    assert results[0].json() == {"error": expected}
    assert len(fake.requests_to("/api/generate")) == 3


def test_reset_connection_drops_the_request_without_a_response(fake: FakeOllama) -> None:
    fake.reset_connection("/api/version")
    with pytest.raises(requests.ConnectionError):
        requests.get(fake.url + "/api/version", timeout=5)
    assert requests.get(fake.url + "/api/version", timeout=5).status_code == 200
    assert len(fake.requests_to("/api/version")) == 2


def test_start_delay_refuses_connections_then_serves() -> None:
    fake = FakeOllama(start_delay=0.3).start()
    try:
        with pytest.raises(requests.ConnectionError):
            requests.get(fake.url, timeout=1)
        assert wait_until(lambda: _answers(fake.url), timeout=2.0)
    finally:
        fake.stop()


def test_silent_for_accepts_connections_but_answers_only_afterwards() -> None:
    fake = FakeOllama(silent_for=0.4).start()
    try:
        socket.create_connection(("127.0.0.1", fake.port), timeout=1).close()
        with pytest.raises(requests.ReadTimeout):
            requests.get(fake.url, timeout=(1, 0.15))
        r = requests.get(fake.url, timeout=(1, 2))  # sent while still silent, answered once serving starts
        assert r.text == "Ollama is running"
    finally:
        fake.stop()


def test_stop_is_prompt_with_a_load_hanging_and_frees_the_port() -> None:
    fake = FakeOllama().start()
    fake.add_model("forever", load_delay=60)
    worker = threading.Thread(target=lambda: _swallow(lambda: post(fake, "/api/generate", {"model": "forever"})))
    worker.start()
    time.sleep(0.1)
    start = time.monotonic()
    fake.stop()
    assert time.monotonic() - start < 1.5
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", fake.port), timeout=1):
        pass
    worker.join(timeout=2)
    assert fake.cancelled_loads == []  # a load cut short by shutdown is not a client hang-up


# -- parsing helpers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "shortest"),
    [
        ("llama3.2", "llama3.2:latest"),
        ("registry.ollama.ai/library/llama3.2:1b", "llama3.2:1b"),
        ("huihui_ai/qwen2.5-abliterate:14b", "huihui_ai/qwen2.5-abliterate:14b"),
        ("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M", "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M"),
        ("localhost:5000/ns/model", "localhost:5000/ns/model:latest"),
        ("https://example.com/ns/m:t", "example.com/ns/m:t"),
        ("Mistral:Latest", "Mistral:Latest"),
    ],
)
def test_valid_names_normalise_to_display_shortest(name: str, shortest: str) -> None:
    assert normalize_name(name) == shortest


@pytest.mark.parametrize(
    "name",
    [
        "",
        ":latest",
        "llama3.2:",
        "/model",
        "a/b/c/d",
        "ns.dot/model",
        "-model",
        "mo del",
        "m:t:x",
        "a" * 81,
        "host/ns/" + "m" * 81,
        "model:.tag",
    ],
)
def test_invalid_names_are_rejected(name: str) -> None:
    assert parse_name(name) is None


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("5m", 300 * 10**9),
        ("1h30m", 5400 * 10**9),
        ("0", 0),
        ("-1m", -60 * 10**9),
        ("1.5s", 1_500_000_000),
        (".5s", 500_000_000),
        ("3\u00b5s", 3000),
        ("+2ms", 2_000_000),
    ],
)
def test_go_parse_duration_accepts_go_syntax(text: str, ns: int) -> None:
    assert go_parse_duration(text) == ns


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", 'time: invalid duration ""'),
        ("300", 'time: missing unit in duration "300"'),
        ("1d", 'time: unknown unit "d" in duration "1d"'),
        (".s", 'time: invalid duration ".s"'),
        ("1\u00e9", 'time: unknown unit "\\xc3\\xa9" in duration "1\\xc3\\xa9"'),
        ("9999999999h", 'time: invalid duration "9999999999h"'),
    ],
)
def test_go_parse_duration_rejects_with_go_messages(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        go_parse_duration(text)
    assert str(info.value) == message


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=0.5).status_code == 200
    except requests.RequestException:
        return False


def _swallow(fn: Callable[[], Any]) -> None:
    with contextlib.suppress(requests.RequestException):
        fn()
