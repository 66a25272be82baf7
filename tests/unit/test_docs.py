"""The documentation cannot drift from the program: every setting is documented where users look."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from preloader.cli import build_parser
from preloader.config import SETTINGS, Setting

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
ENV_EXAMPLE = (REPO / ".env.example").read_text()


def test_the_readme_table_and_env_example_are_what_the_declarations_generate() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "settings_docs.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.var)
def test_every_setting_has_a_row_in_the_readme_configuration_table(setting: Setting) -> None:
    row = re.search(rf"^\| `{setting.var}` \| `{re.escape(setting.flag)}` \|", README, re.MULTILINE)
    assert row, f"README.md has no configuration row for {setting.var} / {setting.flag}"


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.var)
def test_every_setting_is_in_help_with_its_variable(setting: Setting) -> None:
    help_text = " ".join(build_parser().format_help().split())
    assert setting.flag in help_text and f"[env: {setting.var}]" in help_text


@pytest.mark.parametrize("setting", [s for s in SETTINGS if s.var.startswith("OLLAMA_PRELOAD_")], ids=lambda s: s.var)
def test_every_preloader_variable_is_documented_in_env_example(setting: Setting) -> None:
    assert re.search(rf"^#? ?{setting.var}=", ENV_EXAMPLE, re.MULTILINE), f".env.example lacks {setting.var}"


@pytest.mark.parametrize("status", ["0", "1", "2", "3", "4", "130", "143"])
def test_every_exit_status_is_documented_in_the_readme_and_in_help(status: str) -> None:
    assert re.search(rf"^\| {status}", README, re.MULTILINE) or f"| {status} / " in README or f"/ {status} |" in README
    assert status in build_parser().format_help()
