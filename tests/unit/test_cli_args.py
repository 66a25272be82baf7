"""The command line: values that start with '-', and mistakes that never echo a value (it may be a key)."""

from __future__ import annotations

import json

import pytest

from preloader.cli import _attach_dash_values, build_parser, main
from preloader.statuses import EXIT_CONFIG

SECRET = "sk-hunter2"


@pytest.mark.parametrize(
    ("argv", "keep_alive"),
    [
        (["--keep-alive", "-1s"], "-1s"),
        (["--keep-alive", "-1"], "-1"),
        (["--keep-alive=-1"], "-1"),
        (["--keep-alive", "-1h30m"], "-1h30m"),
        (["--keep-alive", "-.5h"], "-.5h"),
        (["--keep-alive", "30m"], "30m"),
    ],
)
def test_flag_values_beginning_with_a_dash_are_values(argv: list[str], keep_alive: str) -> None:
    parser = build_parser()
    args = parser.parse_args(_attach_dash_values(argv, parser))
    assert vars(args)["OLLAMA_PRELOAD_KEEP_ALIVE"] == keep_alive


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--api-kee", SECRET], "--api-kee"),
        (["--api-k", SECRET], "--api-k"),  # no abbreviations: a prefix is unknown, not a guess
        (["--api-key", SECRET, "--modles", "x"], "--modles"),
        ([f"--api-kee={SECRET}"], "--api-kee"),
        (["--models", "m", SECRET], "unexpected argument"),
        (["--best-effort=" + SECRET], "--best-effort"),
        (["--api-key", "--models", "m"], "--api-key"),
    ],
)
def test_a_mistyped_command_line_is_one_line_naming_the_flag_never_a_value(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv, env={}) == EXIT_CONFIG
    out, err = capsys.readouterr()
    assert SECRET not in out + err
    problem_lines = [line for line in out.splitlines() if named in line]
    assert len(problem_lines) == 1 and "(exit 2)" in out.splitlines()[-1]


def test_a_command_line_mistake_is_a_json_object_when_json_was_asked_for(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--log-format", "json", "--api-kee", SECRET], env={}) == EXIT_CONFIG
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert records[0]["event"] == "config" and "--api-kee" in records[0]["message"]
    assert SECRET not in json.dumps(records)
