"""The images the Docker tier and the benchmark's stack section run: one decision, read by both.

No registry is reachable here, so the images come from `scripts/prepare_docker.sh`: a Python base and an
Ollama image of the official image's shape. Elsewhere, point PRELOADER_PYTHON_BASE_IMAGE /
PRELOADER_OLLAMA_IMAGE at the real ones (`python:3.12-slim`, `ollama/ollama:0.32.15`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PREPARE_SCRIPT = REPO_ROOT / "scripts" / "prepare_docker.sh"


def docker_ollama_version() -> str:
    """The Ollama release the stand-in image holds, as scripts/prepare_docker.sh decides it.

    The script is the one place it is pinned (with the same override variable); repeating it here would let
    the two drift and the tier silently skip for want of an image.
    """
    override = os.environ.get("PRELOADER_DOCKER_OLLAMA_VERSION")
    if override:
        return override
    match = re.search(
        r'^OLLAMA_VERSION="\$\{PRELOADER_DOCKER_OLLAMA_VERSION:-([^}"]+)\}"', PREPARE_SCRIPT.read_text(), re.MULTILINE
    )
    if match is None:
        raise RuntimeError(f"no OLLAMA_VERSION default found in {PREPARE_SCRIPT}")
    return match.group(1)


OLLAMA_VERSION = docker_ollama_version()
PYTHON_BASE_IMAGE = os.environ.get("PRELOADER_PYTHON_BASE_IMAGE", "preloader-standin/python:3.11-slim")
OLLAMA_IMAGE = os.environ.get("PRELOADER_OLLAMA_IMAGE", f"preloader-standin/ollama:{OLLAMA_VERSION}")
