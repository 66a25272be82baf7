"""Which proxy a request to the server goes through: Go's `httpproxy.FromEnvironment`, as a pure function.

The same environment must send the preloader where Ollama's own client (the `ollama` CLI in a puller
container) goes, so this follows `golang.org/x/net/http/httpproxy` rather than requests or curl:
`HTTP_PROXY` for http targets, `HTTPS_PROXY` for https ones (upper case first, then lower case), `NO_PROXY`
with its comma list, `*`, domain suffixes, `.domain`, `*.domain`, IPs, CIDRs and `host:port`; `localhost`
and loopback addresses never go through a proxy. `ALL_PROXY` is ignored entirely, as Go ignores it (requests
and curl would read it and send even loopback traffic through it).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

DEFAULT_PORTS = {"http": "80", "https": "443"}
SUPPORTED_SCHEMES = ("http", "https")  # what requests can speak to a proxy without extra packages


class ProxyError(ValueError):
    """A proxy setting this client cannot use; the message never shows the proxy's credentials."""


@dataclass(frozen=True)
class ProxyChoice:
    url: str | None  # None: connect directly
    variable: str | None = None  # which variable chose it, for messages

    def __repr__(self) -> str:  # the URL may carry a password
        return f"ProxyChoice(url={redact(self.url)!r}, variable={self.variable!r})"


def proxy_for(target: str, env: Mapping[str, str]) -> ProxyChoice:
    """The proxy for `target` (a URL) under `env`, decided as Go's `ProxyFromEnvironment` decides it.

    >>> proxy_for("http://ollama:11434", {"HTTP_PROXY": "proxy:3128"}).url
    'http://proxy:3128'
    >>> proxy_for("http://127.0.0.1:11434", {"HTTP_PROXY": "proxy:3128", "ALL_PROXY": "proxy:1"}).url is None
    True
    """
    try:
        parts = urlsplit(target)
        parts.port  # noqa: B018 -- raises on what Go's url.Parse would refuse
    except ValueError:
        raise ProxyError("the server URL cannot be parsed, so no proxy can be chosen for it") from None
    scheme = parts.scheme.lower()
    if scheme == "https":
        variable, value = _first(env, "HTTPS_PROXY", "https_proxy")
    elif scheme == "http":
        variable, value = _first(env, "HTTP_PROXY", "http_proxy")
        if value and env.get("REQUEST_METHOD"):
            # Go refuses HTTP_PROXY under CGI, where a request header could have set it (golang.org/s/cgihttpproxy).
            raise ProxyError(f"{variable} is refused in a CGI environment (REQUEST_METHOD is set), as Go refuses it")
    else:
        return ProxyChoice(None)
    if not value:
        return ProxyChoice(None)
    proxy = parse_proxy(value)
    if proxy is None:
        # Go drops a proxy it cannot parse and connects directly; so do we (config warns about it).
        return ProxyChoice(None)
    _, no_proxy = _first(env, "NO_PROXY", "no_proxy")
    if not use_proxy(_canonical_addr(parts, scheme), no_proxy):
        return ProxyChoice(None)
    if not _usable(proxy):
        raise ProxyError(f"{variable} is not a proxy URL with a host and a numeric port (the value is not shown)")
    if urlsplit(proxy).scheme.lower() not in SUPPORTED_SCHEMES:
        raise ProxyError(
            f"{variable} uses the scheme {urlsplit(proxy).scheme!r}; this client reaches proxies over http or https "
            "only (set NO_PROXY for the Ollama server if it needs no proxy)"
        )
    return ProxyChoice(proxy, variable)


def parse_proxy(value: str) -> str | None:
    """Go's `parseProxy`: a value without a scheme (`proxy:3128`) means `http://proxy:3128`; None if unusable.

    >>> parse_proxy("cache.corp.example.com:1234"), parse_proxy("socks5://127.0.0.1")
    ('http://cache.corp.example.com:1234', 'socks5://127.0.0.1')
    """
    parsed = _split(value)
    if parsed is None or not parsed.scheme or not parsed.netloc:
        retried = _split("http://" + value)
        if retried is not None:
            return retried.geturl()
    return parsed.geturl() if parsed is not None else None


def use_proxy(addr: str, no_proxy: str) -> bool:
    """Go's `useProxy` for a canonical `host:port`: False for localhost, loopback and NO_PROXY matches.

    >>> use_proxy("127.0.0.2:80", ""), use_proxy("[::1]:80", ""), use_proxy("www.foo.com:80", "foo.com")
    (False, False, False)
    """
    if not addr:
        return True
    split = _split_host_port(addr)
    if split is None:
        return False
    host, port = split
    if host == "localhost":
        return False
    ip = _ip(host)
    if ip is not None and ip.is_loopback:
        return False
    host = host.strip().lower()
    for entry in no_proxy.split(","):
        entry = entry.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return False
        if _matches(entry, host, port, ip):
            return False
    return True


def redact(url: str | None) -> str | None:
    """A URL fit for a log line: any user:password replaced.

    >>> redact("http://user:secret@proxy:3128")
    'http://***@proxy:3128'
    """
    if url is None:
        return None
    scheme, sep, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    return f"{scheme}{sep}{netloc}{slash}{path}"


def _matches(entry: str, host: str, port: str, ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
    """One NO_PROXY entry against the target, in the order Go's `config.init` classifies entries."""
    try:
        network = ipaddress.ip_network(entry, strict=False) if "/" in entry else None
    except ValueError:
        network = None
    if network is not None:
        return ip is not None and ip.version == network.version and ip in network
    entry_port = ""
    split = _split_host_port(entry)
    if split is not None:
        entry_host, entry_port = split
        if not entry_host:
            return False  # ":1" has no host part: Go ignores the entry
        if entry_host.startswith("[") and entry_host.endswith("]"):
            entry_host = entry_host[1:-1]
    else:
        entry_host = entry
    entry_ip = _ip(entry_host)
    if entry_ip is not None:
        return ip is not None and entry_ip == ip and entry_port in ("", port)
    if not entry_host:
        return False
    if entry_host.startswith("*."):
        entry_host = entry_host[1:]
    match_host = not entry_host.startswith(".")
    if match_host:
        entry_host = "." + entry_host
    if host.endswith(entry_host) or (match_host and host == entry_host[1:]):
        return entry_port in ("", port)
    return False


def _usable(proxy: str) -> bool:
    """Go would also "use" `http://http://p:x` (host `http:`); connecting there fails, so refuse it up front."""
    parts = _split(proxy)
    return parts is not None and bool(parts.hostname) and not parts.netloc.endswith(":")


def _first(env: Mapping[str, str], *names: str) -> tuple[str, str]:
    """Go's getEnvAny: the first variable that is set and not empty."""
    for name in names:
        if env.get(name):
            return name, env[name]
    return names[0], ""


def _canonical_addr(parts: SplitResult, scheme: str) -> str:
    host = parts.hostname or ""
    try:
        port = str(parts.port) if parts.port is not None else DEFAULT_PORTS.get(scheme, "")
    except ValueError:
        port = DEFAULT_PORTS.get(scheme, "")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _split(value: str) -> SplitResult | None:
    try:
        parsed = urlsplit(value)
        parsed.port  # noqa: B018 -- raises on a port that is not a number, as Go's url.Parse fails
    except ValueError:
        return None
    if any(char <= " " for char in value):
        return None
    return parsed


def _split_host_port(text: str) -> tuple[str, str] | None:
    """Go's `net.SplitHostPort`, enough for NO_PROXY entries and canonical addresses."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or not text[end + 1 :].startswith(":"):
            return None
        return text[1:end], text[end + 2 :]
    host, sep, port = text.rpartition(":")
    if not sep or ":" in host:
        return None
    return host, port


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip
