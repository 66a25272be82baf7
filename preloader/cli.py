"""The command line: flags and environment in, one exit status out. Errors become statuses here only."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import traceback
from collections.abc import Mapping, Sequence
from types import FrameType

from preloader import __version__
from preloader.client import OllamaClient
from preloader.config import SETTINGS, Config, load_config
from preloader.errors import ConfigError, Interrupted, ServerNotReady
from preloader.logs import EventLog
from preloader.report import (
    EXIT_CONFIG,
    EXIT_INTERNAL,
    EXIT_MODELS_NOT_READY,
    EXIT_OK,
    EXIT_SERVER_NOT_READY,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    Report,
    model_rows,
    models_status,
    summary_lines,
    write_report,
)
from preloader.run import Progress, preload

EXIT_STATUSES = f"""exit statuses:
  {EXIT_OK}    every listed model warmed and resident
  {EXIT_INTERNAL}    unexpected internal error (traceback with --verbose)
  {EXIT_CONFIG}    invalid configuration (nothing was sent to the server)
  {EXIT_SERVER_NOT_READY}    the server never became healthy within the wait timeout
  {EXIT_MODELS_NOT_READY}    at least one model failed to warm or is not resident afterwards
  {EXIT_SIGINT}  interrupted by SIGINT;  {EXIT_SIGTERM}  interrupted by SIGTERM
With best effort, {EXIT_SERVER_NOT_READY} and {EXIT_MODELS_NOT_READY} become {EXIT_OK} \
(the log still says what failed)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ollama-preload",
        description="Load the models an Ollama server needs into memory, verify they stay loaded, and exit "
        "with a status a pipeline can trust. Every option can also be set by the environment variable "
        "named in its help; the flag wins.",
        epilog=EXIT_STATUSES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    for setting in SETTINGS:
        default = f" Default: {setting.default}." if setting.default else ""
        help_text = f"{setting.help}{default} [env: {setting.var}]"
        if setting.is_switch:
            parser.add_argument(
                setting.flag, dest=setting.var, action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
        else:
            parser.add_argument(setting.flag, dest=setting.var, metavar=setting.metavar, default=None, help=help_text)
    return parser


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    flags = {var: _flag_text(value) for var, value in vars(args).items() if value is not None}
    environment = os.environ if env is None else env
    try:
        config = load_config(environment, flags)
    except ConfigError as exc:
        # The format itself may be what is invalid; json only when it clearly asks for json.
        wanted = flags.get("OLLAMA_PRELOAD_LOG_FORMAT", environment.get("OLLAMA_PRELOAD_LOG_FORMAT", ""))
        log = EventLog("json" if wanted.strip().lower() == "json" else "text")
        for problem in exc.problems:
            log.error("config", problem)
        log.error(
            "exit",
            f"invalid configuration; nothing was sent to the server (exit {EXIT_CONFIG})",
            exit_status=EXIT_CONFIG,
        )
        return EXIT_CONFIG
    return run_and_report(config)


def run_and_report(config: Config) -> int:
    log = EventLog(config.log_format)
    if config.verbose:
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(name)s: %(message)s")
    for warning in config.warnings:
        log.warning("config", warning)
    client = OllamaClient(config.host.base_url, api_key=config.api_key)
    progress = Progress()
    note = None
    previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        preload(config, client, log, progress)
        status = EXIT_OK
    except ServerNotReady as exc:
        log.error("not-ready", str(exc))
        status, note = EXIT_SERVER_NOT_READY, "server not ready"
    except (Interrupted, KeyboardInterrupt) as exc:
        interrupted = exc if isinstance(exc, Interrupted) else Interrupted("SIGINT", EXIT_SIGINT)
        done = [outcome.model for outcome in progress.outcomes]
        log.warning("interrupted", f"{interrupted}; done: {', '.join(done) or 'none'}", done=done)
        status, note = interrupted.exit_status, str(interrupted)
    except Exception as exc:  # the one place an unexpected error becomes a status
        log.error(
            "internal-error",
            f"internal error: {type(exc).__name__}: {exc}"
            + ("" if config.verbose else " (run with --verbose for a traceback)"),
        )
        if config.verbose:
            traceback.print_exc()
        status, note = EXIT_INTERNAL, "internal error"
    finally:
        signal.signal(signal.SIGTERM, previous)
        client.close()

    rows = model_rows([entry.text for entry in config.models], progress.outcomes, progress.residency)
    if status == EXIT_OK:
        status = models_status(rows)
    if config.best_effort and status in (EXIT_SERVER_NOT_READY, EXIT_MODELS_NOT_READY):
        status = EXIT_OK
    report = Report(
        server=config.host.base_url,
        server_version=progress.server_version,
        waited_seconds=progress.waited,
        models=rows,
        exit_status=status,
        best_effort=config.best_effort,
        note=note,
    )
    log.lines("summary", summary_lines(report), report=report.to_json())
    if config.report_path is not None:
        try:
            write_report(report, config.report_path)
        except OSError as exc:
            log.error("report", f"cannot write the report to {config.report_path}: {exc}")
    return status


def _raise_interrupted(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name, EXIT_SIGTERM)


def _flag_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
