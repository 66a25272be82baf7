"""The preloader container warming a real Ollama container over a user-defined container network."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from tests.docker.conftest import OLLAMA_IMAGE, SMOLLM2, ContainerRun, OllamaInContainer, parse_docker_time

pytestmark = pytest.mark.docker


def _resident(ollama: OllamaInContainer, name: str) -> dict[str, Any] | None:
    return next((m for m in ollama.ps() if m.get("name") == name or m.get("model") == name), None)


def test_the_ollama_container_serves_the_release_its_image_tag_names(ollama_container: OllamaInContainer) -> None:
    # The tier's results are claimed for the tagged release: a stand-in built from another binary would
    # make that claim false while every other test still passed.
    tag = OLLAMA_IMAGE.rpartition(":")[2]
    served = requests.get(f"{ollama_container.base_url}/api/version", timeout=10).json()["version"]

    assert served == tag, f"{OLLAMA_IMAGE} serves Ollama {served}"


def test_preloader_warms_the_model_over_the_container_network_and_exits_0(
    ollama_container: OllamaInContainer, run_preloader: Any
) -> None:
    run: ContainerRun = run_preloader(
        {
            # The compose form: a service name and port, no scheme.
            "OLLAMA_HOST": f"{ollama_container.alias}:11434",
            "OLLAMA_PRELOAD_MODELS": SMOLLM2,
            "OLLAMA_PRELOAD_KEEP_ALIVE": "45m",
            "OLLAMA_PRELOAD_WAIT_TIMEOUT": "60s",
        }
    )

    assert run.exit_code == 0, run.logs
    loaded = _resident(ollama_container, SMOLLM2)
    assert loaded is not None, f"{SMOLLM2} not in /api/ps after exit 0:\n{run.logs}"
    # The keep-alive sent by the preloader, not the server's 5-minute default, sets the expiry.
    remaining = parse_docker_time(loaded["expires_at"]) - time.time()
    assert 40 * 60 < remaining <= 45 * 60 + 5, loaded["expires_at"]


def test_a_missing_model_makes_the_preloader_exit_4_and_name_it(
    ollama_container: OllamaInContainer, run_preloader: Any
) -> None:
    run: ContainerRun = run_preloader(
        {
            "OLLAMA_HOST": f"{ollama_container.alias}:11434",
            "OLLAMA_PRELOAD_MODELS": f"{SMOLLM2}, no-such-model:latest",
            "OLLAMA_PRELOAD_WAIT_TIMEOUT": "60s",
        }
    )

    assert run.exit_code == 4, run.logs
    assert "no-such-model" in run.logs
    # The model that exists is still warmed: one failure does not stop the others.
    assert _resident(ollama_container, SMOLLM2) is not None
