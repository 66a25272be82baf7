"""What only the bash fallback, fallback/preload_models.sh, has to prove; run against the fake Ollama.

Its behaviour as a preloader (requests, statuses, key log phrases) is proved for both implementations by the
behaviour suite, tests/fake/test_preloader.py. Here: it stays small and clean, runs without a checkout, keeps
secrets out of process arguments, chooses proxies by Ollama's (Go's) rules rather than curl's, parses
OLLAMA_HOST as documented, and refuses, before sending anything, every value it cannot check exactly.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import preloader
from testkit.fake_ollama import FakeOllama
from tests.fake.conftest import BASH, REPO, SCRIPT, clean_env, settings

PYTHON_HINT = "python -m preloader"

# --- size, style, version --------------------------------------------------------------------------------


def test_the_script_is_under_500_lines_so_a_user_can_read_it_before_running_it() -> None:
    assert len(SCRIPT.read_text().splitlines()) < 500


def test_the_script_passes_shellcheck() -> None:
    result = subprocess.run(
        [str(REPO / ".venv" / "bin" / "shellcheck"), str(SCRIPT)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout


def test_the_script_version_is_the_packages_version() -> None:
    (version,) = re.findall(r'^PRELOADER_VERSION="([^"]+)"$', SCRIPT.read_text(), re.MULTILINE)
    assert version == preloader.__version__


def test_a_copy_of_the_script_alone_warms_a_model_from_the_root_directory(fake: FakeOllama, tmp_path: Path) -> None:
    copy = tmp_path / "preload_models.sh"
    shutil.copy(SCRIPT, copy)
    fake.add_model("m")
    result = subprocess.run(
        ["bash", str(copy)], cwd="/", env=clean_env(**settings(fake, "m")), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert [b.body["model"] for b in fake.requests_to("/api/generate")] == ["m"]


def test_help_prints_the_header_and_sends_nothing(fake: FakeOllama) -> None:
    result = BASH.run("--help", **settings(fake, "m"))
    assert result.returncode == 0 and "Waits for an Ollama server" in result.stdout and "refuses" in result.stdout
    assert fake.requests == []


# --- the refusal table: exit 2, one line naming the setting, nothing sent ---------------------------------

REFUSED = [
    # what the Python CLI does and the fallback does not: refused with a pointer to the CLI
    ({"OLLAMA_PRELOAD_LOG_FORMAT": "json"}, "OLLAMA_PRELOAD_LOG_FORMAT", True),
    ({"OLLAMA_PRELOAD_REPORT": "/tmp/report.json"}, "OLLAMA_PRELOAD_REPORT", True),
    ({"OLLAMA_PRELOAD_PULL": "missing"}, "OLLAMA_PRELOAD_PULL", True),
    ({"OLLAMA_PRELOAD_CONCURRENCY": "2"}, "OLLAMA_PRELOAD_CONCURRENCY", True),
    ({"OLLAMA_PRELOAD_MODE": "keep"}, "OLLAMA_PRELOAD_MODE", True),
    ({"OLLAMA_PRELOAD_HOSTS": "http://a:1,http://b:2"}, "OLLAMA_PRELOAD_HOSTS", True),
    ({"OLLAMA_PRELOAD_RESOLVE": "dns"}, "OLLAMA_PRELOAD_RESOLVE", True),
    ({"OLLAMA_PRELOAD_HOSTS": "http://u:sk-secret@a:1"}, "OLLAMA_PRELOAD_HOSTS", True),  # credentials never shown
    ({"OLLAMA_PRELOAD_MODELS": "m?temperature=0"}, "temperature", True),
    ({"OLLAMA_PRELOAD_MODELS": "m?prompt=Hi"}, "prompt", True),
    ({"OLLAMA_PRELOAD_MODELS": "m:tag:cloud"}, "OLLAMA_PRELOAD_MODELS", False),
    # names outside the allow-list
    ({"OLLAMA_PRELOAD_MODELS": 'm"x'}, "OLLAMA_PRELOAD_MODELS", False),
    ({"OLLAMA_PRELOAD_MODELS": "m\\x"}, "OLLAMA_PRELOAD_MODELS", False),
    ({"OLLAMA_PRELOAD_MODELS": "a/b/c/d"}, "OLLAMA_PRELOAD_MODELS", False),
    ({"OLLAMA_PRELOAD_MODELS": "x" * 81}, "OLLAMA_PRELOAD_MODELS", False),
    ({"OLLAMA_PRELOAD_MODELS": "-m"}, "OLLAMA_PRELOAD_MODELS", False),
    ({"OLLAMA_PRELOAD_MODELS": "m?num_ctx=8k"}, "num_ctx", False),
    ({"OLLAMA_PRELOAD_MODELS": "m?use_mmap=1"}, "use_mmap", False),
    # durations: integer seconds or Go units only; no sub-second keep-alive; nothing that overflows
    ({"OLLAMA_PRELOAD_KEEP_ALIVE": "1.5h"}, "OLLAMA_PRELOAD_KEEP_ALIVE", False),
    ({"OLLAMA_PRELOAD_KEEP_ALIVE": "999ms"}, "OLLAMA_PRELOAD_KEEP_ALIVE", False),
    ({"OLLAMA_PRELOAD_KEEP_ALIVE": "3000000h"}, "OLLAMA_PRELOAD_KEEP_ALIVE", False),
    ({"OLLAMA_PRELOAD_KEEP_ALIVE": "99999999999"}, "OLLAMA_PRELOAD_KEEP_ALIVE", False),
    ({"OLLAMA_PRELOAD_KEEP_ALIVE": "5 m"}, "OLLAMA_PRELOAD_KEEP_ALIVE", False),
    ({"OLLAMA_PRELOAD_WAIT_TIMEOUT": "1e3"}, "OLLAMA_PRELOAD_WAIT_TIMEOUT", False),
    ({"OLLAMA_PRELOAD_WARM_TIMEOUT": "0s"}, "OLLAMA_PRELOAD_WARM_TIMEOUT", False),
    # numbers by pattern and range
    ({"OLLAMA_PRELOAD_ATTEMPTS": "11"}, "OLLAMA_PRELOAD_ATTEMPTS", False),
    ({"OLLAMA_PRELOAD_NUM_PREDICT": "-1"}, "OLLAMA_PRELOAD_NUM_PREDICT", False),
    # hosts it cannot read exactly
    ({"OLLAMA_HOST": "http://user:pw@ollama:11434"}, "OLLAMA_HOST", False),
    ({"OLLAMA_HOST": "ollama:abc"}, "OLLAMA_HOST", False),
    ({"OLLAMA_HOST": "ollama:66000"}, "OLLAMA_HOST", False),
    ({"OLLAMA_HOST": "ftp://ollama"}, "OLLAMA_HOST", False),
    ({"OLLAMA_HOST": "http://ollama/a b"}, "OLLAMA_HOST", False),
    ({"OLLAMA_HOST": "http://ollama?x=1"}, "OLLAMA_HOST", False),
    # the key: visible ASCII only (a newline would be a header injection)
    ({"OLLAMA_API_KEY": "sk-secret\r\nX-Injected: 1"}, "OLLAMA_API_KEY", False),
    ({"OLLAMA_API_KEY": "sk-secret with-space"}, "OLLAMA_API_KEY", False),
]


@pytest.mark.parametrize(
    ("bad", "named", "hint"), REFUSED, ids=[",".join(f"{k}={v!r}"[:60] for k, v in c[0].items()) for c in REFUSED]
)
def test_what_the_script_cannot_check_exactly_is_refused_with_exit_2_before_anything_is_sent(
    fake: FakeOllama, bad: dict[str, str], named: str, hint: bool
) -> None:
    fake.add_model("m")
    result = BASH.run(**{**settings(fake, "m"), **bad})
    assert result.returncode == 2, result.stdout
    assert fake.requests == []
    *problems, last = result.stdout.splitlines()
    assert last.endswith("(exit 2)")
    assert any(named in line for line in problems), result.stdout
    assert (PYTHON_HINT in result.stdout) is hint
    assert "sk-secret" not in result.stdout + result.stderr


def test_a_command_line_argument_is_refused_since_the_script_reads_the_environment_only(fake: FakeOllama) -> None:
    result = BASH.run("--best-effort", **settings(fake, "m"))
    assert result.returncode == 2 and fake.requests == []
    assert "'--best-effort'" in result.stdout and PYTHON_HINT in result.stdout


DEFAULTS = {
    "OLLAMA_PRELOAD_LOG_FORMAT": "text",
    "OLLAMA_PRELOAD_PULL": "never",
    "OLLAMA_PRELOAD_CONCURRENCY": "1",
    "OLLAMA_PRELOAD_MODE": "once",
    "OLLAMA_PRELOAD_RESOLVE": "none",
    "OLLAMA_PRELOAD_REPORT": "",
    "OLLAMA_PRELOAD_HOSTS": "",
    "OLLAMA_PRELOAD_NUM_PREDICT": "",  # compose passes unset settings as empty strings
}


def test_unsupported_settings_at_their_default_values_are_accepted(fake: FakeOllama) -> None:
    fake.add_model("m")
    result = BASH.run(**settings(fake, "m", **DEFAULTS))
    assert result.returncode == 0, result.stdout
    assert [b.body["model"] for b in fake.requests_to("/api/generate")] == ["m"]


@pytest.mark.parametrize(
    ("keep_alive", "wire"),
    [("-1", -1), ("0", 0), ("300", 300), ("1h30m", "1h30m"), ("-1s", "-1s"), ("1s500ms", "1s500ms")],
)
def test_keep_alive_is_sent_as_a_number_for_integer_seconds_and_as_the_same_string_for_a_duration(
    fake: FakeOllama, keep_alive: str, wire: int | str
) -> None:
    fake.add_model("m")
    result = BASH.run(**settings(fake, "m", OLLAMA_PRELOAD_KEEP_ALIVE=keep_alive))
    assert result.returncode == 0, result.stdout
    (body,) = [r.body for r in fake.requests_to("/api/generate")]
    assert body["keep_alive"] == wire and type(body["keep_alive"]) is type(wire)


def test_a_model_unloaded_by_keep_alive_0_is_not_a_failure(fake: FakeOllama) -> None:
    fake.add_model("m")
    result = BASH.run(**settings(fake, "m", OLLAMA_PRELOAD_KEEP_ALIVE="0"))
    assert result.returncode == 0, result.stdout
    assert "m: unloaded as asked" in result.stdout and "m" not in fake.loaded()


def test_a_failure_to_list_loaded_models_means_residency_unverified_and_exit_4(fake: FakeOllama) -> None:
    fake.add_model("m")
    fake.fail("/api/ps", 500, "boom", times=5)
    result = BASH.run(**settings(fake, "m", OLLAMA_PRELOAD_ATTEMPTS="2"))
    assert result.returncode == 4, result.stdout
    assert len(fake.requests_to("/api/ps")) == 2  # a 5xx is retried like any transient failure
    assert "could not verify" in result.stdout and result.stdout.rstrip().endswith("(exit 4)")


# --- OLLAMA_HOST ---------------------------------------------------------------------------------------------


def bash_functions(snippet: str, **env: str) -> str:
    """Source the script (which must not run) and run `snippet` with its functions."""
    result = subprocess.run(
        ["bash", "-c", f"source {SCRIPT}\n{snippet}\n"],
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


HOSTS = {
    "": "http://127.0.0.1:11434",
    "ollama": "http://ollama:11434",
    "ollama:11435": "http://ollama:11435",
    "http://ollama": "http://ollama:80",
    "https://ollama": "https://ollama:443",
    "https://example.com/ollama/": "https://example.com:443/ollama",
    "[::1]:1337": "http://[::1]:1337",
    "::1": "http://[::1]:11434",
    "0.0.0.0": "http://127.0.0.1:11434",
    "[::]:8080": "http://[::1]:8080",
    ":1234": "http://127.0.0.1:1234",
    " '1.2.3.4' ": "http://1.2.3.4:11434",
    "ollama.com": "https://ollama.com:443",
}


def test_ollama_host_is_read_with_ollamas_defaults() -> None:
    show = 'parse_host "$h"; printf "%s\\n" "$BASE_URL"'
    snippet = "\n".join(f"h={_bash_quote(value)}; {show}" for value in HOSTS)
    assert bash_functions(snippet).splitlines() == list(HOSTS.values())


def test_the_source_only_defines_functions_and_runs_nothing(fake: FakeOllama) -> None:
    out = bash_functions("declare -F main load_config wait_for_server warm_model verify_residency; echo sourced")
    assert out.split()[-1] == "sourced" and fake.requests == []


def _bash_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


# --- secrets ---------------------------------------------------------------------------------------------


def _children(pid: int) -> list[bytes]:
    """Command line and environment of every direct child of `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append((entry / "cmdline").read_bytes() + b"\0" + (entry / "environ").read_bytes())
        except (OSError, ValueError, IndexError):
            continue
    return found


def test_the_api_key_reaches_the_server_but_never_curls_arguments_nor_environment(fake: FakeOllama) -> None:
    fake.add_model("slow", load_delay=1.0)
    secret = "sk-test-0123456789"
    process = BASH.popen(**settings(fake, "slow", OLLAMA_API_KEY=secret, OLLAMA_PRELOAD_VERBOSE="1"))
    time.sleep(0.6)  # the warm request is in flight: curl is running
    children = _children(process.pid)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stdout
    assert any(b"curl" in child for child in children)
    assert not any(secret.encode() in child for child in children)
    assert fake.requests and all(r.header("Authorization") == f"Bearer {secret}" for r in fake.requests)
    assert secret not in stdout + stderr


@pytest.mark.parametrize("secret", ['sk-"quoted"\\back', 'sk-"-x"-proxy=http://127.0.0.1:9'])
def test_an_api_key_with_quotes_or_backslashes_reaches_the_server_intact(fake: FakeOllama, secret: str) -> None:
    fake.add_model("m")
    result = BASH.run(**settings(fake, "m", OLLAMA_API_KEY=secret))
    assert result.returncode == 0, result.stdout
    assert fake.requests and all(r.header("Authorization") == f"Bearer {secret}" for r in fake.requests)
    assert secret not in result.stdout + result.stderr


# --- proxies: Ollama's (Go's) rules, computed by the script -------------------------------------------------


class ProxyRecorder:
    """A loopback socket standing in for a proxy: records the head of each request, holds it, answers 502."""

    def __init__(self, hold: float = 0.0) -> None:
        self.hold = hold
        self.requests: list[str] = []
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._socket.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._socket.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    self.requests.append(conn.recv(65536).decode("latin-1"))
                    time.sleep(self.hold)
                    conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._socket.close()


@pytest.fixture
def proxy() -> Iterator[ProxyRecorder]:
    recorder = ProxyRecorder()
    try:
        yield recorder
    finally:
        recorder.close()


NO_PROXIES = {
    name: ""
    for name in (
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
    )
}  # empty is unset, and the developer's own stay out


def _run_via(host: str, **env: str) -> subprocess.CompletedProcess[str]:
    settings = {"OLLAMA_HOST": host, "OLLAMA_PRELOAD_MODELS": "m", "OLLAMA_PRELOAD_WAIT_TIMEOUT": "1"}
    return BASH.run(**{**NO_PROXIES, **settings, **env})


REMOTE = "http://ollama.invalid:11434"


@pytest.mark.parametrize(
    "env",
    [
        {"HTTP_PROXY": "{proxy}"},
        {"http_proxy": "{proxy}"},
        {"HTTP_PROXY": "{proxy}", "http_proxy": "http://127.0.0.1:9"},
        {"HTTP_PROXY": "{proxy}", "NO_PROXY": "other.invalid,.example.com"},
        {"HTTP_PROXY": "{bare}"},
    ],
    ids=["HTTP_PROXY", "http_proxy", "uppercase-first", "no_proxy-other-hosts", "no-scheme"],
)
def test_an_http_target_goes_through_http_proxy(proxy: ProxyRecorder, env: dict[str, str]) -> None:
    bare = proxy.url.removeprefix("http://")
    result = _run_via(REMOTE, **{k: v.format(proxy=proxy.url, bare=bare) for k, v in env.items()})
    assert result.returncode == 3, result.stdout
    assert proxy.requests and proxy.requests[0].startswith(f"GET {REMOTE}/api/version HTTP/1.1")


@pytest.mark.parametrize(
    "env",
    [
        {"HTTPS_PROXY": "{proxy}"},
        {"ALL_PROXY": "{proxy}"},
        {"all_proxy": "{proxy}"},
        {"HTTP_PROXY": "{proxy}", "NO_PROXY": "ollama.invalid"},
        {"HTTP_PROXY": "{proxy}", "no_proxy": ".invalid"},
        {"HTTP_PROXY": "{proxy}", "NO_PROXY": "*"},
        {"HTTP_PROXY": "{proxy}", "NO_PROXY": "invalid:11434"},
    ],
    ids=[
        "https_proxy-for-http",
        "ALL_PROXY",
        "all_proxy",
        "no_proxy-host",
        "no_proxy-domain",
        "no_proxy-star",
        "no_proxy-domain-port",
    ],
)
def test_an_http_target_bypasses_the_proxy_when_go_would(proxy: ProxyRecorder, env: dict[str, str]) -> None:
    result = _run_via(REMOTE, **{k: v.format(proxy=proxy.url) for k, v in env.items()})
    assert result.returncode == 3, result.stdout  # ollama.invalid does not resolve: tried directly
    assert proxy.requests == []


def test_an_https_target_tunnels_through_https_proxy_only(proxy: ProxyRecorder) -> None:
    result = _run_via("https://ollama.invalid", HTTPS_PROXY=proxy.url, HTTP_PROXY="http://127.0.0.1:9")
    assert result.returncode == 3, result.stdout
    assert proxy.requests and proxy.requests[0].startswith("CONNECT ollama.invalid:443 HTTP/1.1")


def test_a_no_proxy_cidr_covers_an_ip_target(proxy: ProxyRecorder) -> None:
    result = _run_via("http://192.0.2.7:11434", HTTP_PROXY=proxy.url, NO_PROXY="192.0.2.0/24")
    assert result.returncode == 3 and proxy.requests == []
    result = _run_via("http://192.0.2.7:11434", HTTP_PROXY=proxy.url, NO_PROXY="198.51.100.0/24")
    assert result.returncode == 3 and proxy.requests[0].startswith("GET http://192.0.2.7:11434/api/version")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_loopback_is_never_proxied(fake: FakeOllama, proxy: ProxyRecorder, host: str) -> None:
    fake.add_model("m")
    url = fake.url.replace("127.0.0.1", host)
    result = BASH.run(**settings(fake, "m", OLLAMA_HOST=url, HTTP_PROXY=proxy.url, http_proxy=proxy.url))
    assert result.returncode == 0, result.stdout
    assert proxy.requests == [] and fake.requests_to("/api/generate")


def test_proxy_credentials_reach_the_proxy_but_never_a_process_argument() -> None:
    recorder = ProxyRecorder(hold=1.0)
    try:
        port = recorder.url.rsplit(":", 1)[1]
        process = BASH.popen(
            OLLAMA_HOST=REMOTE,
            OLLAMA_PRELOAD_MODELS="m",
            OLLAMA_PRELOAD_WAIT_TIMEOUT="3",
            HTTP_PROXY=f"http://user:pr0xy-pass@127.0.0.1:{port}",
        )
        time.sleep(0.6)  # the first attempt is held by the recorder: curl is running
        children = _children(process.pid)
        stdout, _ = process.communicate(timeout=30)
    finally:
        recorder.close()
    assert process.returncode == 3, stdout
    assert any(b"curl" in child for child in children)
    assert not any(b"pr0xy-pass" in child for child in children)
    assert "Proxy-Authorization: Basic dXNlcjpwcjB4eS1wYXNz" in recorder.requests[0]  # user:pr0xy-pass
    assert "pr0xy-pass" not in stdout
