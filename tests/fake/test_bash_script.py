"""What only the bash fallback, scripts/preload_models.sh, has to prove; run against the fake Ollama.

Its behaviour as a preloader (same variables, requests, log lines and exit statuses as the Python package) is
proved once for both implementations by the parity suite, tests/fake/test_preloader.py. What is left here is
bash-specific: the script can be sourced, secrets stay out of process arguments, its own host parsing and JSON
quoting match the package, and the concurrency setting it only accepts.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from tests.fake.conftest import BASH, SCRIPT, clean_env, settings
from tests.support.fake_ollama import FakeOllama


def bash_functions(snippet: str, **env: str) -> str:
    """Source the script (which must not run) and run `snippet` with its functions."""
    source = f"source {SCRIPT}\nset +e\n{snippet}\n"
    result = subprocess.run(["bash", "-c", source], env=clean_env(**env), capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout


# --- structure (shellcheck runs in tests/test_static_checks.py) ------------------------------------------


def test_sourcing_the_script_defines_its_functions_without_running_anything() -> None:
    steps = ["load_config", "wait_for_server", "warm_model", "verify_residency", "print_summary"]
    out = bash_functions(f"declare -F {' '.join(steps)}; echo sourced")
    assert out.split() == [*steps, "sourced"]


# --- concurrency: accepted for compatibility, never applied ---------------------------------------------


def test_a_concurrency_above_1_is_warned_about_and_models_are_warmed_one_at_a_time(fake: FakeOllama) -> None:
    for name in ("a", "b"):
        fake.add_model(name, load_delay=0.5)
    result = BASH.run(**settings(fake, "a b", OLLAMA_PRELOAD_CONCURRENCY="2"))
    assert result.returncode == 0, result.stdout
    assert "OLLAMA_PRELOAD_CONCURRENCY=2 is ignored: the bash fallback warms one model at a time" in result.stdout
    first, second = fake.requests_to("/api/generate")
    assert (first.body["model"], second.body["model"]) == ("a", "b")
    assert second.at - first.at >= 0.5  # b is sent only once a's 0.5 s load has answered


# --- secrets ---------------------------------------------------------------------------------------------


def _children_command_lines(pid: int) -> list[bytes]:
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
    process = BASH.popen("--verbose", **settings(fake, "slow", OLLAMA_API_KEY=secret))
    time.sleep(0.6)  # the warm request is in flight: curl is running
    children = _children_command_lines(process.pid)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stdout
    assert any(b"curl" in child for child in children)
    assert not any(secret.encode() in child for child in children)
    assert fake.requests and all(r.header("Authorization") == f"Bearer {secret}" for r in fake.requests)
    assert secret not in stdout + stderr


# --- parity with the package's parsing -------------------------------------------------------------------

HOSTS = [
    "",
    "1.2.3.4",
    ":1234",
    "example.com:1234",
    ":66000",
    "[::1]",
    "[::]",
    "::1",
    "[::1]:1337",
    " 1.2.3.4 ",
    '"1.2.3.4"',
    "'1.2.3.4'",
    "http://1.2.3.4",
    "https://1.2.3.4",
    "https://example.com/ollama",
    "ollama.com",
    "0.0.0.0",
    "ollama:11434",
    "http://ollama",
    "[0001:002:003:0004::1]",
    "example.com:abc",
    "[::]:8080",
]


def test_ollama_host_is_parsed_exactly_like_the_package_parses_it() -> None:
    from preloader.hosts import parse_host

    show = 'printf \'%s %s\\n\' "$HOST_URL" "$HOST_BASE_URL"'
    snippet = "\n".join(f"parse_host {_bash_quote(h)}; {show}" for h in HOSTS)
    got = bash_functions(snippet).splitlines()
    assert got == [f"{parse_host(h).url} {parse_host(h).base_url}" for h in HOSTS]


def test_json_quote_keeps_any_value_inside_its_json_string() -> None:
    hostile = ['a"b', "back\\slash", "new\nline", "tab\tbell\x07", '"},{"x":1', "$(id)`id`", "é"]
    snippet = "\n".join(f"json_quote {_bash_quote(v)}; printf '%s\\n' \"$REPLY\"" for v in hostile)
    assert [json.loads(line) for line in bash_functions(snippet).splitlines()] == hostile


def _bash_quote(text: str) -> str:
    return (
        "$'"
        + "".join(c if c.isalnum() or c in " .:/[]-_" else f"\\x{ord(c):02x}" if ord(c) < 128 else c for c in text)
        + "'"
    )
