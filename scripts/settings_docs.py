"""Write the README's settings table and .env.example's preloader section from `preloader.config.SETTINGS`.

    python scripts/settings_docs.py          rewrite both files in place
    python scripts/settings_docs.py --check  exit 1 (and say which) when either is stale; the suite runs this

Each setting is declared once, in `preloader/config.py`; these two views are generated so they cannot drift.
The text between the markers is owned by this script: edit the declaration, then run it.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from preloader.config import SETTINGS, Setting  # noqa: E402  (the checkout's package, not an installed one)

README = REPO / "README.md"
ENV_EXAMPLE = REPO / ".env.example"
BEGIN, END = "settings:begin", "settings:end"


def readme_table() -> str:
    rows = ["| variable | flag | default | meaning |", "|---|---|---|---|"]
    for setting in SETTINGS:
        default = f"`{setting.default}`" if setting.default else "—"
        accepted = f" Accepted: {setting.what_is_accepted}." if setting.parser is not None else ""
        rows.append(f"| `{setting.var}` | `{setting.flag}` | {default} | {setting.doc}{accepted} |")
    return "\n".join(rows)


def env_example_section() -> str:
    blocks = []
    for setting in SETTINGS:
        if not setting.in_env_example:
            continue
        blocks.append(_env_block(setting))
    return "\n\n".join(blocks)


def _env_block(setting: Setting) -> str:
    text = setting.doc + (f" Accepted: {setting.what_is_accepted}." if setting.parser is not None else "")
    comment = textwrap.fill(text, width=100, initial_indent="# ", subsequent_indent="# ", break_on_hyphens=False)
    if setting.example is not None:
        return f"{comment}\n{setting.var}={setting.example}"
    return f"{comment}\n# {setting.var}={setting.default}"


def replace_between(text: str, begin: str, end: str, body: str, path: Path) -> str:
    start, stop = text.find(begin), text.find(end)
    if start < 0 or stop < start:
        raise SystemExit(f"{path.name}: markers {begin!r} … {end!r} not found")
    head = text[: text.index("\n", start) + 1]
    tail = text[text.rindex("\n", 0, stop) + 1 :]
    return f"{head}{body}\n{tail}"


def rendered() -> dict[Path, str]:
    return {
        README: replace_between(README.read_text(), f"<!-- {BEGIN}", f"<!-- {END}", readme_table(), README),
        ENV_EXAMPLE: replace_between(
            ENV_EXAMPLE.read_text(), f"# {BEGIN}", f"# {END}", env_example_section(), ENV_EXAMPLE
        ),
    }


def main(argv: list[str]) -> int:
    check = argv[1:] == ["--check"]
    stale = [path for path, text in rendered().items() if path.read_text() != text]
    if check:
        for path in stale:
            print(f"{path.name} is stale: run python scripts/settings_docs.py")
        return 1 if stale else 0
    for path, text in rendered().items():
        path.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
