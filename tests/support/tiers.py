"""Tier availability: skip with a one-line hint, or fail when the tier is required.

`PRELOADER_REQUIRE_TIERS` is a comma-separated list of tiers (`real`, `docker`, `kubernetes`) or `all`; a required tier
that cannot run fails the test instead of skipping it, so CI can never pass with a tier silently skipped.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def required_tiers() -> set[str]:
    raw = os.environ.get("PRELOADER_REQUIRE_TIERS", "")
    tiers = {part.strip().lower() for part in raw.replace(" ", ",").split(",") if part.strip()}
    return {"real", "docker", "kubernetes"} if "all" in tiers else tiers


def unavailable(tier: str, why: str, how: str) -> NoReturn:
    """Skip (or fail, when required) a test whose tier cannot run here."""
    message = f"{tier} tier unavailable: {why}. To enable it: {how}"
    if tier in required_tiers():
        pytest.fail(f"{message} (required by PRELOADER_REQUIRE_TIERS)", pytrace=False)
    pytest.skip(message)
