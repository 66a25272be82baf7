"""Proxy choice mirrors Go's golang.org/x/net/http/httpproxy: its own test tables, then the loopback rules."""

from __future__ import annotations

import pytest

from preloader.proxies import ProxyChoice, ProxyError, parse_proxy, proxy_for, redact, use_proxy

# httpproxy's proxy_test.go, TestProxyForURL: (environment, request URL, proxy URL or None).
GO_PROXY_FOR_URL = [
    ({"HTTP_PROXY": "127.0.0.1:8080"}, "http://example.com", "http://127.0.0.1:8080"),
    ({"HTTP_PROXY": "cache.corp.example.com:1234"}, "http://example.com", "http://cache.corp.example.com:1234"),
    ({"HTTP_PROXY": "cache.corp.example.com"}, "http://example.com", "http://cache.corp.example.com"),
    ({"HTTP_PROXY": "https://cache.corp.example.com"}, "http://example.com", "https://cache.corp.example.com"),
    ({"HTTP_PROXY": "http://127.0.0.1:8080"}, "http://example.com", "http://127.0.0.1:8080"),
    ({"HTTP_PROXY": "https://127.0.0.1:8080"}, "http://example.com", "https://127.0.0.1:8080"),
    (
        {"HTTP_PROXY": "http.proxy.tld", "HTTPS_PROXY": "secure.proxy.tld"},
        "http://insecure.tld/",
        "http://http.proxy.tld",
    ),
    (
        {"HTTP_PROXY": "http.proxy.tld", "HTTPS_PROXY": "secure.proxy.tld"},
        "https://secure.tld/",
        "http://secure.proxy.tld",
    ),
    (
        {"HTTP_PROXY": "http.proxy.tld", "HTTPS_PROXY": "https://secure.proxy.tld"},
        "https://secure.tld/",
        "https://secure.proxy.tld",
    ),
    (
        {"HTTPS_PROXY": "https://secure.proxy.tld", "REQUEST_METHOD": "GET"},
        "https://secure.tld/",
        "https://secure.proxy.tld",
    ),
    ({}, "http://example.com", None),
    ({"NO_PROXY": "example.com", "HTTP_PROXY": "proxy"}, "http://example.com/", None),
    ({"NO_PROXY": ".example.com", "HTTP_PROXY": "proxy"}, "http://example.com/", "http://proxy"),
    ({"NO_PROXY": "ample.com", "HTTP_PROXY": "proxy"}, "http://example.com/", "http://proxy"),
    ({"NO_PROXY": "example.com", "HTTP_PROXY": "proxy"}, "http://foo.example.com/", None),
    ({"NO_PROXY": ".foo.com", "HTTP_PROXY": "proxy"}, "http://example.com/", "http://proxy"),
]


@pytest.mark.parametrize(("env", "target", "proxy"), GO_PROXY_FOR_URL)
def test_the_proxy_chosen_for_a_url_is_the_one_gos_httpproxy_chooses(
    env: dict[str, str], target: str, proxy: str | None
) -> None:
    assert proxy_for(target, env).url == proxy


def test_http_proxy_is_refused_in_a_cgi_environment_as_go_refuses_it() -> None:
    with pytest.raises(ProxyError, match="CGI"):
        proxy_for("http://example.com", {"HTTP_PROXY": "http://10.1.2.3:8080", "REQUEST_METHOD": "GET"})


# httpproxy's TestUseProxy: each host on port 80 against one NO_PROXY list; True = goes through the proxy.
GO_NO_PROXY = (
    "foobar.com, .barbaz.net, *.wildcard.io, 192.168.1.1, 192.168.1.2:81, 192.168.1.3:80, 10.0.0.0/30, "
    "2001:db8::52:0:1, [2001:db8::52:0:2]:443, [2001:db8::52:0:3]:80, 2002:db8:a::45/64"
)
GO_USE_PROXY = [
    ("localhost", False),
    ("127.0.0.1", False),
    ("127.0.0.2", False),
    ("[::1]", False),
    ("[::2]", True),
    ("192.168.1.1", False),
    ("192.168.1.2", True),
    ("192.168.1.3", False),
    ("192.168.1.4", True),
    ("10.0.0.2", False),
    ("[2001:db8::52:0:1]", False),
    ("[2001:db8::52:0:2]", True),
    ("[2001:db8::52:0:3]", False),
    ("[2002:db8:a::123]", False),
    ("[fe80::424b:c8be:1643:a1b6]", True),
    ("barbaz.net", True),
    ("www.barbaz.net", False),
    ("foobar.com", False),
    ("www.foobar.com", False),
    ("foofoobar.com", True),
    ("baz.com", True),
    ("localhost.net", True),
    ("local.localhost", True),
    ("barbarbaz.net", True),
    ("wildcard.io", True),
    ("nested.wildcard.io", False),
    ("awildcard.io", True),
]


@pytest.mark.parametrize(("host", "proxied"), GO_USE_PROXY)
def test_no_proxy_entries_match_as_in_gos_own_table(host: str, proxied: bool) -> None:
    assert use_proxy(f"{host}:80", GO_NO_PROXY) is proxied


@pytest.mark.parametrize(("host", "_"), GO_USE_PROXY)
def test_no_proxy_star_sends_nothing_through_a_proxy(host: str, _: bool) -> None:
    assert use_proxy(f"{host}:80", "*") is False


def test_a_no_proxy_entry_without_a_host_is_ignored_like_go_does() -> None:
    assert use_proxy("example.com:80", ":1") is True


@pytest.mark.parametrize(
    "target", ["http://127.0.0.1:11434", "http://127.8.9.10:80", "http://[::1]:11434", "http://localhost:11434"]
)
@pytest.mark.parametrize(
    "env",
    [
        {"HTTP_PROXY": "http://proxy:3128"},
        {"http_proxy": "http://proxy:3128"},
        {"ALL_PROXY": "http://proxy:3128", "all_proxy": "socks5://proxy:1080"},
    ],
)
def test_loopback_and_localhost_never_go_through_a_proxy(target: str, env: dict[str, str]) -> None:
    assert proxy_for(target, env) == ProxyChoice(None)


@pytest.mark.parametrize("variable", ["ALL_PROXY", "all_proxy"])
def test_all_proxy_is_ignored_entirely_as_go_ignores_it(variable: str) -> None:
    assert proxy_for("http://ollama:11434", {variable: "http://proxy:3128"}).url is None


@pytest.mark.parametrize(
    ("env", "target", "proxy"),
    [
        ({"HTTP_PROXY": "http://upper:1", "http_proxy": "http://lower:1"}, "http://ollama", "http://upper:1"),
        ({"HTTP_PROXY": "", "http_proxy": "http://lower:1"}, "http://ollama", "http://lower:1"),
        ({"HTTPS_PROXY": "http://s:1"}, "http://ollama", None),
        ({"HTTP_PROXY": "http://p:1"}, "https://ollama", None),
        ({"HTTP_PROXY": "http://p:1", "NO_PROXY": "ollama:11434"}, "http://ollama:11434", None),
        ({"HTTP_PROXY": "http://p:1", "NO_PROXY": "ollama:80"}, "http://ollama:11434", "http://p:1"),
        ({"HTTP_PROXY": "http://p:1", "no_proxy": "OLLAMA"}, "http://ollama:11434", None),
    ],
)
def test_upper_case_wins_schemes_pick_their_own_variable_and_no_proxy_ports_must_match(
    env: dict[str, str], target: str, proxy: str | None
) -> None:
    assert proxy_for(target, env).url == proxy


def test_a_proxy_scheme_requests_cannot_speak_is_refused_without_its_password() -> None:
    with pytest.raises(ProxyError) as caught:
        proxy_for("http://ollama:11434", {"HTTP_PROXY": "socks5://user:hunter2@proxy:1080"})
    assert "socks5" in str(caught.value) and "hunter2" not in str(caught.value)


@pytest.mark.parametrize(("value", "parsed"), [("proxy:3128", "http://proxy:3128"), ("http://p", "http://p")])
def test_a_proxy_without_a_scheme_means_http(value: str, parsed: str) -> None:
    assert parse_proxy(value) == parsed


def test_a_proxys_password_never_shows_in_its_repr_or_redacted_form() -> None:
    choice = proxy_for("http://ollama:11434", {"HTTP_PROXY": "http://user:hunter2@proxy:3128"})
    assert choice.url == "http://user:hunter2@proxy:3128"
    assert "hunter2" not in repr(choice) and "hunter2" not in (redact(choice.url) or "")
