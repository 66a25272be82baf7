"""Several real `ollama serve` replicas on 127.0.0.2, .3, .4 (one port), warmed by the preloader as a user runs it.

They are reached two ways: listed in `OLLAMA_PRELOAD_HOSTS`, and through one name with three addresses
(`OLLAMA_PRELOAD_RESOLVE=all`). The name is hermetic: the preloader runs inside a private mount namespace
(`unshare --mount`, util-linux, as root) where a temporary file is bind-mounted over `/etc/hosts`, listing
`replicas.test` on one line per address. glibc's `getaddrinfo` (nsswitch `hosts: files …`) returns every
address the file lists for a name, so the system resolver, unchanged, answers with all of them; nothing outside
that one process sees the file, and the machine's resolver configuration is never touched. The file is
rewritten in place (same inode, so the bind mount shows it) when a fourth replica joins.

The `Host` header: the preloader connects to each address and sends it as `Host`. A loopback-bound Ollama
accepts an IP there (loopback or private) but refuses a plain service name with 403, and one bound to
`0.0.0.0` accepts anything; `test_which_host_header_each_listener_accepts` proves it on every version (its
`0.0.0.0` server lives in a fresh network namespace, so nothing is exposed beyond loopback).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import requests

from testkit.real_ollama import TINY_LLAMA, RealOllama, free_port, no_egress_env, qualify
from tests.support.tiers import unavailable

pytestmark = pytest.mark.real

REPO = Path(__file__).resolve().parents[2]
NAME = "replicas.test"
ADDRESSES = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
FOURTH = "127.0.0.5"
INTERVAL = 1.0
MODEL = TINY_LLAMA  # the smallest model: three CPU loads share two cores here


def needs_namespaces() -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        unavailable("real", "the replica tests need root and util-linux's unshare", "run the suite as root")


def preloader_env(**settings: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("OLLAMA") and key.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    }
    env.update(PYTHONPATH=str(REPO), OLLAMA_PRELOAD_WAIT_TIMEOUT="60", OLLAMA_PRELOAD_WARM_TIMEOUT="120")
    env.update(settings)
    return env


def in_namespace(hosts_file: Path, *args: str) -> list[str]:
    """The preloader's command line inside a private mount namespace whose /etc/hosts is `hosts_file`."""
    script = 'mount --bind "$0" /etc/hosts && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(hosts_file), *args]


def preloader(*args: str) -> list[str]:
    return [sys.executable, "-m", "preloader", *args]


def write_hosts(path: Path, addresses: Sequence[str]) -> None:
    """In place: the bind mount follows the inode, so replacing the file would hide the change."""
    with path.open("w") as handle:
        handle.write("127.0.0.1 localhost\n" + "".join(f"{address} {NAME}\n" for address in addresses))


class Replica:
    """One `ollama serve` bound to `address:port`; RealOllama owns the process (stopped by pid)."""

    def __init__(self, server: RealOllama, address: str, port: int) -> None:
        self.server, self.address, self.port = server, address, port
        self.url = f"http://{address}:{port}"

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.server.running(), f"ollama on {self.url} exited:\n{self.server.log_tail()}"
            try:
                if requests.get(f"{self.url}/api/version", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, f"ollama on {self.url} not ready:\n{self.server.log_tail()}"
            time.sleep(0.05)

    def loaded(self) -> set[str]:
        response = requests.get(f"{self.url}/api/ps", timeout=10)
        response.raise_for_status()
        return {model["name"] for model in response.json()["models"]}


@pytest.fixture
def replicas(ollama_binary: Path, models: Any, tmp_path: Path) -> Iterator[Callable[..., list[Replica]]]:
    """`start(addresses, lacking=())`: one server per address on one shared port, all ready; stopped at the end.
    A server in `lacking` gets an empty models directory: it lacks every test model."""
    needs_namespaces()
    owned: list[Replica] = []
    port = free_port()

    def start(addresses: Sequence[str], lacking: Sequence[str] = ()) -> list[Replica]:
        started = []
        for address in addresses:
            state = tmp_path / f"server-{address}"
            models_dir = state / "empty-models" if address in lacking else models.directory
            server = RealOllama(ollama_binary, state, env={"OLLAMA_HOST": f"{address}:{port}"}, models_dir=models_dir)
            replica = Replica(server, address, port)
            owned.append(replica)
            server.start(wait=False)  # its own wait polls 127.0.0.1; this server is elsewhere on loopback
            started.append(replica)
        for replica in started:
            replica.wait_ready()
        return started

    yield start
    for replica in owned:
        replica.server.stop()


def test_which_host_header_each_listener_accepts(ollama_binary: Path, tmp_path: Path) -> None:
    needs_namespaces()
    probe = r"""
import json, os, subprocess, sys, time, urllib.request
binary, home, port = sys.argv[1], sys.argv[2], sys.argv[3]
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
results = {}
direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the server's dead proxy is not ours
for bind in ("127.0.0.2", "0.0.0.0"):
    env = dict(os.environ, HOME=home, OLLAMA_MODELS=home + "/models", OLLAMA_HOST=f"{bind}:{port}")
    server = subprocess.Popen([binary, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def status(host):
            request = urllib.request.Request(f"http://127.0.0.2:{port}/api/version", headers={"Host": host})
            try:
                with direct.open(request, timeout=2) as response:
                    return response.status
            except urllib.error.HTTPError as error:
                return error.code
            except OSError:
                return 0
        deadline = time.monotonic() + 60
        while status(f"127.0.0.2:{port}") != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        hosts = ("127.0.0.2", "10.1.2.3", sys.argv[4], "8.8.8.8")
        results[bind] = {f"{host}:{port}": status(f"{host}:{port}") for host in hosts}
    finally:
        server.terminate()
        server.wait(10)
print(json.dumps(results))
"""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("OLLAMA")}, **no_egress_env()}
    done = subprocess.run(
        ["unshare", "--net", sys.executable, "-c", probe, str(ollama_binary), str(tmp_path), "11434", NAME],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    loopback, wildcard = results["127.0.0.2"], results["0.0.0.0"]
    # A loopback listener: an address (loopback or private) as Host passes, a service name or a public IP does not.
    assert (loopback["127.0.0.2:11434"], loopback["10.1.2.3:11434"]) == (200, 200)
    assert (loopback[f"{NAME}:11434"], loopback["8.8.8.8:11434"]) == (403, 403)
    # A wildcard listener accepts every Host: the address the preloader sends passes everywhere.
    assert set(wildcard.values()) == {200}


def test_every_replica_listed_in_hosts_is_warmed(replicas: Callable[..., list[Replica]]) -> None:
    servers = replicas(ADDRESSES)
    done = subprocess.run(
        preloader(),
        env=preloader_env(
            OLLAMA_PRELOAD_HOSTS=" ".join(f"{r.address}:{r.port}" for r in servers), OLLAMA_PRELOAD_MODELS=MODEL
        ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for server in servers:
        assert qualify(MODEL) in server.loaded(), server.url
    assert "warmed and resident on 3 of 3 replica(s) (exit 0)" in done.stdout


def test_one_name_with_three_addresses_is_three_replicas_all_warmed(
    replicas: Callable[..., list[Replica]], tmp_path: Path
) -> None:
    servers = replicas(ADDRESSES)
    hosts = tmp_path / "hosts"
    write_hosts(hosts, ADDRESSES)
    env = preloader_env(
        OLLAMA_HOST=f"{NAME}:{servers[0].port}", OLLAMA_PRELOAD_RESOLVE="all", OLLAMA_PRELOAD_MODELS=MODEL
    )
    done = subprocess.run(in_namespace(hosts, *preloader()), env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"http://{NAME}:{servers[0].port} → 3 replica(s)" in done.stdout
    for server in servers:
        assert qualify(MODEL) in server.loaded(), server.url
        assert f"{MODEL} on {server.url}: resident" in done.stdout
    # Outside the namespace the name does not exist: the machine's resolver was never changed.
    assert subprocess.run(["getent", "hosts", NAME], capture_output=True).returncode != 0


def test_a_replica_lacking_the_model_exits_4_naming_it_and_the_others_are_warmed(
    replicas: Callable[..., list[Replica]], tmp_path: Path
) -> None:
    servers = replicas(ADDRESSES, lacking=(ADDRESSES[1],))
    hosts = tmp_path / "hosts"
    write_hosts(hosts, ADDRESSES)
    env = preloader_env(
        OLLAMA_HOST=f"{NAME}:{servers[0].port}", OLLAMA_PRELOAD_RESOLVE="all", OLLAMA_PRELOAD_MODELS=MODEL
    )
    done = subprocess.run(in_namespace(hosts, *preloader()), env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 4, done.stdout + done.stderr
    lacking = servers[1]
    assert f"not ready: {MODEL} on {lacking.url} (exit 4)" in done.stdout.splitlines()[-1]
    assert qualify(MODEL) in servers[0].loaded() and qualify(MODEL) in servers[2].loaded()
    assert lacking.loaded() == set()


def test_a_replica_down_exits_3_and_the_others_are_warmed(
    replicas: Callable[..., list[Replica]], tmp_path: Path
) -> None:
    servers = replicas(ADDRESSES[:2])
    hosts = tmp_path / "hosts"
    write_hosts(hosts, ADDRESSES)  # the third address has no server: connections are refused
    env = preloader_env(
        OLLAMA_HOST=f"{NAME}:{servers[0].port}",
        OLLAMA_PRELOAD_RESOLVE="all",
        OLLAMA_PRELOAD_MODELS=MODEL,
        OLLAMA_PRELOAD_WAIT_TIMEOUT="3",
    )
    done = subprocess.run(in_namespace(hosts, *preloader()), env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 3, done.stdout + done.stderr
    down = f"http://{ADDRESSES[2]}:{servers[0].port}"
    assert f"not ready: {down} (server not ready)" in done.stdout.splitlines()[-1]
    for server in servers:
        assert qualify(MODEL) in server.loaded(), server.url


def test_watch_mode_warms_a_fourth_replica_within_an_interval_of_its_address_appearing(
    replicas: Callable[..., list[Replica]], tmp_path: Path
) -> None:
    servers = replicas(ADDRESSES)
    port = servers[0].port
    hosts = tmp_path / "hosts"
    write_hosts(hosts, ADDRESSES)
    listen = free_port()
    env = preloader_env(
        OLLAMA_HOST=f"{NAME}:{port}",
        OLLAMA_PRELOAD_RESOLVE="all",
        OLLAMA_PRELOAD_MODELS=MODEL,
        OLLAMA_PRELOAD_KEEP_ALIVE="-1",
        OLLAMA_PRELOAD_MODE="watch",
        OLLAMA_PRELOAD_WATCH_INTERVAL=str(INTERVAL),
        OLLAMA_PRELOAD_LISTEN=f"127.0.0.1:{listen}",
        OLLAMA_PRELOAD_LOG_FORMAT="json",
    )
    log = tmp_path / "watch.log"
    with log.open("wb") as out:
        process = subprocess.Popen(in_namespace(hosts, *preloader()), env=env, stdout=out, stderr=subprocess.STDOUT)
    try:

        def ready() -> tuple[int, dict[str, Any]]:
            try:
                response = requests.get(f"http://127.0.0.1:{listen}/ready", timeout=5)
            except requests.RequestException:
                return 0, {}
            return response.status_code, response.json()

        deadline = time.monotonic() + 120
        while ready()[0] != 200:
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        assert len(ready()[1]["servers"]) == 3
        (fourth,) = replicas([FOURTH])
        write_hosts(hosts, (*ADDRESSES, FOURTH))
        appeared, appeared_at = time.monotonic(), datetime.now(timezone.utc)

        def records() -> list[dict[str, Any]]:
            return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]

        def warmed() -> bool:  # 0.11.4 lists a model in /api/ps while it is still loading: wait for the answer too
            done = any(r["event"] == "warmed" and r.get("server") == fourth.url for r in records())
            return done and qualify(MODEL) in fourth.loaded()

        while not warmed():
            assert time.monotonic() - appeared < 60, log.read_text()
            time.sleep(0.05)
        (noticed,) = [r for r in records() if r["event"] == "replica-new" and r["server"] == fourth.url]
        # Noticed within one interval (plus scheduling slack on two busy cores); then only the load remains.
        lag = (datetime.fromisoformat(noticed["time"].replace("Z", "+00:00")) - appeared_at).total_seconds()
        assert lag < INTERVAL + 1.0, f"noticed {lag:.2f} s after its address appeared"
        deadline = time.monotonic() + 30
        while len(ready()[1].get("servers", [])) != 4 or ready()[0] != 200:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode == 0, log.read_text()
