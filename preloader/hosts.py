"""`OLLAMA_HOST` parsing, exactly as Ollama's own `envconfig.Host` does it.

One value must mean one endpoint everywhere: the same variable is read by the `ollama` CLI in a puller
container and by the server, so we follow Go's rules (including their quirks, such as `http://h` meaning
port 80) rather than Python's `urllib` conventions.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

DEFAULT_PORT = "11434"
SCHEMES = ("http", "https")  # all that Go's net/http client (Ollama's CLI) can connect with
_NOT_IN_ADDRESS = frozenset("@?#\\")


class HostError(ValueError):
    """An OLLAMA_HOST that Ollama's own client could not use; the message never repeats credentials."""


@dataclass(frozen=True)
class OllamaHost:
    scheme: str
    host: str  # as Ollama reports it: "" for `:1234` means every interface
    port: str
    path: str  # reverse-proxy prefix, without leading or trailing slash

    @property
    def url(self) -> str:
        """The server address as Ollama itself would print it.

        >>> parse_host("ollama:11434").url
        'http://ollama:11434'
        >>> parse_host("https://example.com/ollama").url
        'https://example.com:443/ollama'
        """
        return _join(self.scheme, self.host, self.port, self.path)

    @property
    def base_url(self) -> str:
        """The address a client connects to: wildcard binds mean this machine.

        >>> parse_host("0.0.0.0").base_url
        'http://127.0.0.1:11434'
        >>> parse_host("[::]:8080").base_url
        'http://[::1]:8080'
        """
        return _join(self.scheme, self.connect_host, self.port, self.path)

    @property
    def connect_host(self) -> str:
        """The name or address a client connects to (`base_url`'s host, without brackets)."""
        return {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)


def parse_host(value: str | None) -> OllamaHost:
    """Parse an `OLLAMA_HOST` value. Never fails: like Ollama, a bad port falls back to the default.

    >>> parse_host("").url
    'http://127.0.0.1:11434'
    >>> parse_host("http://ollama").url
    'http://ollama:80'
    >>> parse_host("::1").url
    'http://[::1]:11434'
    """
    text = (value or "").strip().strip("\"'").strip()
    default_port = DEFAULT_PORT
    scheme, sep, hostport = text.partition("://")
    if not sep:
        scheme, hostport = "http", text
        if text == "ollama.com":
            scheme, hostport = "https", "ollama.com:443"
    elif scheme == "http":
        default_port = "80"
    elif scheme == "https":
        default_port = "443"

    hostport, _, path = hostport.partition("/")
    split = _split_host_port(hostport)
    if split is None:
        host, port = "127.0.0.1", default_port
        ip = _parse_ip(hostport.strip("[]"))
        if ip is not None:
            host = ip
        elif hostport:
            host = hostport
    else:
        host, port = split
    if not _valid_port(port):
        port = default_port
    return OllamaHost(scheme=scheme, host=host, port=port, path=path.strip("/"))


def check_host(value: str) -> None:
    """Refuse what `parse_host` would read but Ollama's Go client could not use.

    Go's `envconfig.Host` never fails, but its result can be unusable: `ftp://h` ends in "unsupported
    protocol scheme", `http://user:pw@h` becomes host `user` (or `[user:pw@h:1]`) on port 80, a space or `#`
    breaks the URL. Credentials are named, never shown: they would end up in every log line that names the
    server.

    >>> check_host("http://ollama:11434/prefix")
    >>> check_host("http://user:pw@ollama")
    Traceback (most recent call last):
    ...
    preloader.hosts.HostError: it carries credentials (user:password@); they are not shown here
    """
    text = (value or "").strip().strip("\"'").strip()
    scheme, sep, rest = text.partition("://")
    address = (rest if sep else text).partition("/")[0]
    if "@" in address:
        raise HostError("it carries credentials (user:password@); they are not shown here")
    if sep and scheme.lower() not in SCHEMES:
        raise HostError(f"scheme {scheme!r} is not one Ollama's client can use (http or https)")
    bad = sorted({char for char in text if char <= " " or char == "\x7f" or char in _NOT_IN_ADDRESS})
    if bad:
        raise HostError(f"it contains {', '.join(repr(char) for char in bad)}, which cannot be part of a server URL")


def _split_host_port(hostport: str) -> tuple[str, str] | None:
    """Go's `net.SplitHostPort`: None where Go returns an error."""
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0 or not hostport[end + 1 :].startswith(":"):
            return None
        host, port = hostport[1:end], hostport[end + 2 :]
        if ":" in port or "[" in port or "]" in port:
            return None
        return host, port
    host, sep, port = hostport.rpartition(":")
    if not sep or ":" in host or any(c in hostport for c in "[]"):
        return None
    return host, port


def _parse_ip(text: str) -> str | None:
    """Go's `net.ParseIP(text).String()`, or None when it is not an IP literal."""
    if "%" in text:  # Go's ParseIP rejects zoned addresses
        return None
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return ip.compressed


def _valid_port(port: str) -> bool:
    # Go's strconv.ParseInt accepts a sign, so "+80" is a port and "-1" is rejected only by the range check.
    body = port[1:] if port[:1] in ("+", "-") else port
    return body.isdigit() and body.isascii() and 0 <= int(port) <= 65535


def _join(scheme: str, host: str, port: str, path: str) -> str:
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return f"{scheme}://{netloc}" + (f"/{path}" if path else "")


# Where watch mode serves its probes; 9464 is the port OpenTelemetry's Prometheus exporters use.
class ListenError(ValueError):
    pass


def parse_listen(text: str) -> tuple[str, int] | None:
    """`host:port` (`[::]:9464` for IPv6, `:9464` for all interfaces); empty turns the endpoints off.

    >>> parse_listen("0.0.0.0:9464"), parse_listen("[::1]:80"), parse_listen(":9000"), parse_listen(" ")
    (('0.0.0.0', 9464), ('::1', 80), ('0.0.0.0', 9000), None)
    """
    value = text.strip()
    if not value:
        return None
    host, colon, port_text = value.rpartition(":")
    if not colon or not port_text.isascii() or not port_text.isdigit():
        raise ListenError(f"{value!r} has no port; write host:port, e.g. 0.0.0.0:9464")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ListenError(f"port {port} is out of range (0-65535)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ListenError(f"{value!r}: put an IPv6 address in brackets, e.g. [::]:9464")
    return host or "0.0.0.0", port
