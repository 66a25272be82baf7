"""The preloader image as built from the repo's Dockerfile: who it runs as, what it contains, its CLI."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.docker.conftest import PYTHON_BASE_IMAGE, BuiltImage, ContainerRun, resource_labels

pytestmark = pytest.mark.docker

MB = 1_000_000


def test_image_runs_as_a_fixed_non_root_user(preloader_image: BuiltImage, run_preloader: Any) -> None:
    run: ContainerRun = run_preloader({}, command=None, entrypoint=["id", "-u"])

    assert run.exit_code == 0, run.logs
    assert run.logs.strip() == "10001"


def test_help_exits_0_and_documents_the_environment_variables(run_preloader: Any) -> None:
    run: ContainerRun = run_preloader({}, command=["--help"])

    assert run.exit_code == 0, run.logs
    for variable in ("OLLAMA_HOST", "OLLAMA_PRELOAD_MODELS", "OLLAMA_PRELOAD_KEEP_ALIVE"):
        assert variable in run.logs


def test_invalid_configuration_exits_2_inside_the_container(run_preloader: Any) -> None:
    # Nothing listens at this address: exit 2 proves validation happens before any network traffic.
    run: ContainerRun = run_preloader(
        {"OLLAMA_HOST": "127.0.0.1:9", "OLLAMA_PRELOAD_MODELS": "smollm2:135m", "OLLAMA_PRELOAD_NUM_PREDICT": "9"}
    )

    assert run.exit_code == 2, run.logs
    assert "OLLAMA_PRELOAD_NUM_PREDICT" in run.logs


def test_image_holds_no_pip_no_sources_and_no_caches(run_preloader: Any) -> None:
    probe = (
        "import importlib.util, os, sys; "
        "print('pip' if importlib.util.find_spec('pip') else 'no-pip'); "
        "print('src' if os.path.exists('/src') else 'no-src'); "
        "print('cache' if any(os.path.exists(p) for p in ('/root/.cache/pip', '/tmp/pip-cache')) else 'no-cache')"
    )
    run: ContainerRun = run_preloader({}, command=["-c", probe], entrypoint=["python"])

    assert run.exit_code == 0, run.logs
    assert run.logs.split() == ["no-pip", "no-src", "no-cache"]


def test_image_size_stays_close_to_its_base(preloader_image: BuiltImage, capsys: pytest.CaptureFixture[str]) -> None:
    added = preloader_image.size_bytes - preloader_image.base_size_bytes
    with capsys.disabled():
        print(
            f"\n[docker tier] preloader image {preloader_image.size_bytes / MB:.0f} MB on base {PYTHON_BASE_IMAGE} "
            f"({preloader_image.base_size_bytes / MB:.0f} MB): +{added / MB:.1f} MB; "
            f"built in {preloader_image.build_seconds:.1f} s"
        )

    # requests + tenacity and the package are a few MB; tens of MB would mean a cache or toolchain leaked in.
    assert added < 25 * MB


def test_docker_stop_ends_a_waiting_preloader_promptly_with_143(preloader_image: BuiltImage, test_network: Any) -> None:
    # In a container the tool is PID 1, for which the kernel ignores SIGTERM unless the process handles it:
    # without its own handler `docker stop` would wait out its grace period and SIGKILL it (exit 137).
    from testcontainers.core.container import DockerContainer

    container = DockerContainer(preloader_image.tag, labels=resource_labels()).with_network(test_network)
    container.with_env("OLLAMA_HOST", "nothing-listens-here:11434")
    container.with_env("OLLAMA_PRELOAD_MODELS", "smollm2:135m")
    container.with_env("OLLAMA_PRELOAD_WAIT_TIMEOUT", "5m")
    container.start()
    try:
        wrapped = container.get_wrapped_container()
        time.sleep(2)  # well into the health wait
        started = time.monotonic()
        wrapped.stop(timeout=20)
        took = time.monotonic() - started
        wrapped.reload()
        logs = wrapped.logs().decode(errors="replace")

        assert wrapped.attrs["State"]["ExitCode"] == 143, logs
        assert took < 10, f"docker stop took {took:.1f} s"
    finally:
        container.stop()
