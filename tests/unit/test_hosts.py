"""OLLAMA_HOST parsing: Ollama's own `envconfig` test table, then the forms compose users write."""

import pytest

from preloader.hosts import parse_host

# envconfig/config_test.go:TestHost, case for case.
OLLAMA_HOST_CASES = [
    ("", "http://127.0.0.1:11434"),
    ("1.2.3.4", "http://1.2.3.4:11434"),
    (":1234", "http://:1234"),
    ("1.2.3.4:1234", "http://1.2.3.4:1234"),
    ("example.com", "http://example.com:11434"),
    ("example.com:1234", "http://example.com:1234"),
    (":0", "http://:0"),
    (":66000", "http://:11434"),
    (":-1", "http://:11434"),
    ("[::1]", "http://[::1]:11434"),
    ("[::]", "http://[::]:11434"),
    ("::1", "http://[::1]:11434"),
    ("[::1]:1337", "http://[::1]:1337"),
    (" 1.2.3.4 ", "http://1.2.3.4:11434"),
    ('"1.2.3.4"', "http://1.2.3.4:11434"),
    ("'1.2.3.4'", "http://1.2.3.4:11434"),
    ("http://1.2.3.4", "http://1.2.3.4:80"),
    ("http://1.2.3.4:4321", "http://1.2.3.4:4321"),
    ("https://1.2.3.4", "https://1.2.3.4:443"),
    ("https://1.2.3.4:4321", "https://1.2.3.4:4321"),
    ("https://example.com/ollama", "https://example.com:443/ollama"),
    ("ollama.com", "https://ollama.com:443"),
]

COMPOSE_FORMS = [
    ("0.0.0.0", "http://0.0.0.0:11434"),
    ("ollama:11434", "http://ollama:11434"),
    ("ollama", "http://ollama:11434"),
    ("http://ollama", "http://ollama:80"),
    ("https://x", "https://x:443"),
    ("[::1]:11434", "http://[::1]:11434"),
    ("http://ollama:11434/", "http://ollama:11434"),
    ("example.com:abc", "http://example.com:11434"),
    ("example.com:", "http://example.com:11434"),
    ("[0001:002:003:0004::1]:56789", "http://[0001:002:003:0004::1]:56789"),
    ("0001:002:003:0004::1", "http://[1:2:3:4::1]:11434"),
    ("HTTP://x", "HTTP://x:11434"),
    ("http://proxy.local:8080/ollama/v1/", "http://proxy.local:8080/ollama/v1"),
]


@pytest.mark.parametrize(("value", "url"), OLLAMA_HOST_CASES)
def test_host_is_parsed_exactly_like_ollama_parses_it(value: str, url: str) -> None:
    assert parse_host(value).url == url


@pytest.mark.parametrize(("value", "url"), COMPOSE_FORMS)
def test_host_forms_seen_in_compose_files_mean_one_endpoint(value: str, url: str) -> None:
    assert parse_host(value).url == url


@pytest.mark.parametrize(
    ("value", "base_url"),
    [
        ("", "http://127.0.0.1:11434"),
        ("0.0.0.0", "http://127.0.0.1:11434"),
        ("0.0.0.0:8080", "http://127.0.0.1:8080"),
        (":1234", "http://127.0.0.1:1234"),
        ("[::]", "http://[::1]:11434"),
        ("ollama:11434", "http://ollama:11434"),
        ("https://example.com/ollama", "https://example.com:443/ollama"),
    ],
)
def test_wildcard_bind_addresses_connect_to_this_machine(value: str, base_url: str) -> None:
    assert parse_host(value).base_url == base_url


def test_unset_host_means_the_local_default() -> None:
    assert parse_host(None).base_url == "http://127.0.0.1:11434"
