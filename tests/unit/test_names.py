"""Model names by Ollama's rules: what is valid, how the server reports it, what is a cloud model."""

import pytest

from preloader.names import InvalidModelName, parse_model_name


@pytest.mark.parametrize(
    ("name", "display"),
    [
        ("llama3.2", "llama3.2:latest"),
        ("llama3.2:latest", "llama3.2:latest"),
        ("smollm2:135m", "smollm2:135m"),
        ("library/llama3.2", "llama3.2:latest"),
        ("registry.ollama.ai/library/llama3.2:3b", "llama3.2:3b"),
        ("huihui_ai/qwen2.5-abliterate:14b", "huihui_ai/qwen2.5-abliterate:14b"),
        ("registry.ollama.ai/huihui_ai/qwen2.5-abliterate:14b", "huihui_ai/qwen2.5-abliterate:14b"),
        ("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M", "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M"),
        ("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF", "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:latest"),
        ("localhost:5000/team/model:v1", "localhost:5000/team/model:v1"),
        ("https://example.com/ns/model", "example.com/ns/model:latest"),
        ("nomic-embed-text", "nomic-embed-text:latest"),
        ("_private", "_private:latest"),
        ("qwen3:0.6b", "qwen3:0.6b"),
    ],
)
def test_names_normalise_to_what_the_server_reports(name: str, display: str) -> None:
    assert parse_model_name(name).display == display


@pytest.mark.parametrize(
    "name",
    [
        "",
        "/model",
        "model:",
        "ns/",
        "a//b",
        "-model",
        ".model",
        "model:-tag",
        "my.ns/model",
        "model name",
        "model;rm -rf",
        'model"quote',
        "mödel",
        "x" * 81,
        "model:" + "t" * 81,
        "a::b",
        "model?",
    ],
)
def test_names_ollama_would_refuse_are_invalid(name: str) -> None:
    with pytest.raises(InvalidModelName):
        parse_model_name(name)


def test_name_parts_have_ollamas_length_limits() -> None:
    assert parse_model_name("x" * 80).model == "x" * 80
    assert parse_model_name("h" * 350 + "/ns/m").host == "h" * 350
    with pytest.raises(InvalidModelName):
        parse_model_name("h" * 351 + "/ns/m")


def test_names_compare_without_case_but_keep_the_users_spelling() -> None:
    name = parse_model_name("Llama3.2:Latest")
    assert name.display == "Llama3.2:Latest"
    assert name.key == parse_model_name("llama3.2").key


@pytest.mark.parametrize(
    ("name", "cloud"),
    [
        ("gpt-oss:120b-cloud", True),
        ("deepseek-v3.1:671b-cloud", True),
        ("qwen3-coder:cloud", True),
        ("gpt-oss:120b:cloud", True),
        ("gpt-oss:120b:local", False),
        ("cloud", False),
        ("cloudy:latest", False),
        ("llama3.2", False),
    ],
)
def test_cloud_models_are_recognised_by_their_tag(name: str, cloud: bool) -> None:
    assert parse_model_name(name).cloud is cloud
