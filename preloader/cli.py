"""The command line: flags and environment in, one exit status out. Errors become statuses here only."""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys
import traceback
from collections.abc import Mapping, Sequence
from types import FrameType
from typing import NoReturn

from preloader import __version__
from preloader.check import run_checks
from preloader.client import OllamaClient
from preloader.config import SETTINGS, Config, load_config
from preloader.errors import ConfigError, Interrupted
from preloader.logs import EventLog, silence
from preloader.report import (
    ReplicaRow,
    Report,
    ReportPathError,
    check_report_path,
    model_rows,
    models_status,
    summary_lines,
    write_report,
)
from preloader.run import Progress, announce, preload_replicas
from preloader.statuses import (
    EXIT_CONFIG,
    EXIT_INTERNAL,
    EXIT_MODELS_NOT_READY,
    EXIT_OK,
    EXIT_SERVER_NOT_READY,
    EXIT_SIGINT,
    EXIT_SIGTERM,
)

EXIT_STATUSES = f"""exit statuses:
  {EXIT_OK}    every listed model warmed and resident
  {EXIT_INTERNAL}    unexpected internal error (traceback with --verbose)
  {EXIT_CONFIG}    invalid configuration (nothing was sent to the server)
  {EXIT_SERVER_NOT_READY}    the server never became healthy within the wait timeout
  {EXIT_MODELS_NOT_READY}    at least one model failed to warm, is not resident afterwards, or could not be verified
  {EXIT_SIGINT}  interrupted by SIGINT;  {EXIT_SIGTERM}  interrupted by SIGTERM
With best effort, {EXIT_SERVER_NOT_READY} and {EXIT_MODELS_NOT_READY} become {EXIT_OK} \
(the log still says what failed)."""


class UsageError(Exception):
    """The command line itself is wrong. The message names flags only, never a value (it may be a key)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse quotes the offending value ("ignored explicit argument 'x'"); that value may be a secret.
        raise UsageError(re.sub(r"'[^']*'", "(value not shown)", message))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ollama-preload",
        allow_abbrev=False,  # `--api-k KEY` must be an unknown flag, not a guess that may eat the next word
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
    try:
        return _main(sys.argv[1:] if argv is None else list(argv), os.environ if env is None else env)
    finally:
        _flush_stdout()


def _main(argv: list[str], environment: Mapping[str, str]) -> int:
    parser = build_parser()
    try:
        args, extras = parser.parse_known_args(_attach_dash_values(argv, parser))
        if extras:
            raise UsageError(_unknown_arguments(extras))
    except UsageError as exc:
        return _refuse([f"{exc}; see ollama-preload --help"], _json_wanted({}, environment, argv))
    flags = {var: _flag_text(value) for var, value in vars(args).items() if value is not None}
    try:
        config = load_config(environment, flags)
    except ConfigError as exc:
        return _refuse(exc.problems, _json_wanted(flags, environment, argv))
    if config.report_path is not None:
        try:
            check_report_path(config.report_path)
        except ReportPathError as exc:
            label = "--report" if "OLLAMA_PRELOAD_REPORT" in flags else "OLLAMA_PRELOAD_REPORT"
            return _refuse(
                [f"{label}: {exc}; accepted: a file in an existing, writable directory, or a device or FIFO"],
                config.log_format == "json",
            )
    if config.mode == "check":
        return check_and_report(config)
    if config.mode == "watch":
        return watch_until_stopped(config)
    return run_and_report(config)


def check_and_report(config: Config) -> int:
    """Check mode: a probe's status stays honest, so best effort does not apply."""
    log = EventLog(config.log_format)
    return run_checks(
        config, log, lambda replica: OllamaClient(replica.url, api_key=config.api_key, proxy=replica.proxy)
    )


def watch_until_stopped(config: Config) -> int:
    """Watch mode: runs until SIGTERM/SIGINT, which end it with 0 (a requested stop is not a failure)."""
    # Imported here: prometheus_client and the HTTP server cost a one-shot run ~40 ms it never uses.
    from preloader.endpoints import Endpoints
    from preloader.keeper import Keeper
    from preloader.metrics import keeper_registry
    from preloader.replicas import resolve

    log = EventLog(config.log_format)
    for warning in config.warnings:
        log.warning("config", warning)
    if config.resolve == "all":  # the replicas are whatever the names resolve to, looked up every cycle
        clients: list[OllamaClient] = []
        keeper = Keeper.from_config(
            config, log, clients, interval=config.watch_interval, discover=lambda: resolve(config)
        )
    else:
        clients = [
            OllamaClient(target.host.base_url, api_key=config.api_key, proxy=target.proxy.url)
            for target in config.targets
        ]
        keeper = Keeper.from_config(config, log, clients, interval=config.watch_interval)
    endpoints = None
    if config.listen is not None:
        try:
            endpoints = Endpoints(keeper.snapshot, keeper_registry(keeper.snapshot), config.listen).start()
        except OSError as exc:
            for client in clients:
                client.close()
            host, port = config.listen
            return _refuse(
                [
                    f"OLLAMA_PRELOAD_LISTEN: cannot listen on {host}:{port}: {exc.strerror or exc}; choose a free "
                    "port, or set it empty to serve no endpoints"
                ],
                config.log_format == "json",
            )
        address = f"{config.listen[0]}:{endpoints.port}"
        log.info("listening", f"serving /ready, /live and /metrics on {address}", address=address)
    announce(config, log)
    handlers = {
        sig: signal.signal(sig, lambda signum, _frame: keeper.stop()) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        keeper.watch()
    except Exception as exc:  # the loop died: the same one place as the one-shot run turns this into a status
        log.error("internal-error", f"internal error: {type(exc).__name__}: {exc}")
        if config.verbose:
            traceback.print_exc()
        return EXIT_INTERNAL
    finally:
        for sig, previous in handlers.items():
            signal.signal(sig, previous)
        if endpoints is not None:
            endpoints.close()
        for client in clients:
            client.close()
        keeper.close()
    log.info("stopped", f"stopped on request (exit {EXIT_OK})", exit_status=EXIT_OK)
    return EXIT_OK


def _refuse(problems: Sequence[str], json_wanted: bool) -> int:
    log = EventLog("json" if json_wanted else "text")
    for problem in problems:
        log.error("config", problem)
    log.error(
        "exit",
        f"invalid configuration; nothing was sent to the server (exit {EXIT_CONFIG})",
        exit_status=EXIT_CONFIG,
    )
    return EXIT_CONFIG


def _json_wanted(flags: Mapping[str, str], environment: Mapping[str, str], argv: Sequence[str]) -> bool:
    """The format itself may be what is invalid (or unparsed); json only when it clearly asks for json."""
    wanted = flags.get("OLLAMA_PRELOAD_LOG_FORMAT", environment.get("OLLAMA_PRELOAD_LOG_FORMAT", ""))
    for index, token in enumerate(argv):
        if token == "--log-format" and index + 1 < len(argv):
            wanted = argv[index + 1]
        elif token.startswith("--log-format="):
            wanted = token.partition("=")[2]
    return wanted.strip().lower() == "json"


def _attach_dash_values(argv: Sequence[str], parser: argparse.ArgumentParser) -> list[str]:
    """`--keep-alive -1s` → `--keep-alive=-1s`: argparse takes a value starting with `-` for a flag.

    Only for flags that take a value, and only for a next word that is not itself a long flag, so
    `--api-key --models x` still fails as "expected one argument" rather than taking `--models` as the key.
    """
    takes_value = {
        option
        for action in parser._actions
        if action.nargs is None and not isinstance(action, argparse.BooleanOptionalAction)
        for option in action.option_strings
        if option.startswith("--")
    }
    out: list[str] = []
    index = 0
    while index < len(argv):
        token = argv[index]
        if token == "--":
            out.extend(argv[index:])
            break
        following = argv[index + 1] if index + 1 < len(argv) else None
        if token in takes_value and following is not None and following.startswith("-") and following[1:2] != "-":
            out.append(f"{token}={following}")
            index += 2
            continue
        out.append(token)
        index += 1
    return out


def _unknown_arguments(extras: Sequence[str]) -> str:
    """Name unknown flags, never the words around them: the word after `--api-kee` is the key."""
    flags = sorted({token.partition("=")[0] for token in extras if token.startswith("--") and len(token) > 2})
    if flags:
        return f"unknown option{'s' if len(flags) > 1 else ''} {', '.join(flags)} (values not shown)"
    return "unexpected argument(s) on the command line (not shown: they may hold a secret); every option starts with --"


def _flush_stdout() -> None:
    """A closed pipe (`| head -0`) must not turn into "Exception ignored … BrokenPipeError" at exit."""
    if sys.stdout is None:
        return
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        silence(sys.stdout)


def run_and_report(config: Config) -> int:
    log = EventLog(config.log_format)
    if config.verbose:
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(name)s: %(message)s")
    for warning in config.warnings:
        log.warning("config", warning)
    progresses: list[Progress] = []
    note = None
    previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        preload_replicas(config, log, progresses)
        status = EXIT_OK
    except (Interrupted, KeyboardInterrupt) as exc:
        interrupted = exc if isinstance(exc, Interrupted) else Interrupted("SIGINT", EXIT_SIGINT)
        done = [
            _done_label(outcome.model, progress.replica) for progress in progresses for outcome in progress.outcomes
        ]
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

    names = [entry.text for entry in config.models]
    if not progresses:  # cut short before the replicas were known
        progresses = [Progress(replica=None if not config.per_replica else config.host.base_url)]
    rows = tuple(
        row
        for progress in progresses
        for row in model_rows(names, progress.outcomes, progress.residency, progress.replica)
    )
    down = [progress for progress in progresses if progress.not_ready is not None]
    if status == EXIT_OK and down:
        # A replica that never answered is the graver failure: "server not ready" even when others lack a model.
        status = EXIT_SERVER_NOT_READY
        note = (
            "server not ready" if not config.per_replica else f"{len(down)} of {len(progresses)} replica(s) not ready"
        )
    if status == EXIT_OK:
        status = models_status(rows)
    if config.best_effort and status in (EXIT_SERVER_NOT_READY, EXIT_MODELS_NOT_READY):
        status = EXIT_OK
    first = progresses[0]
    report = Report(
        server=config.host.base_url if len(config.targets) == 1 else ", ".join(t.host.base_url for t in config.targets),
        server_version=first.server_version if not config.per_replica else None,
        waited_seconds=first.waited if not config.per_replica else None,
        models=rows,
        exit_status=status,
        best_effort=config.best_effort,
        note=note,
        replicas=tuple(
            ReplicaRow(
                server=progress.replica or config.host.base_url,
                server_version=progress.server_version,
                waited_seconds=progress.waited,
                healthy=progress.not_ready is None,
                error=progress.not_ready,
            )
            for progress in progresses
        )
        if config.per_replica
        else (),
    )
    log.lines("summary", summary_lines(report), report=report.to_json())
    if config.report_path is not None:
        try:
            write_report(report, config.report_path)
        except OSError as exc:
            log.error("report", f"cannot write the report to {config.report_path}: {exc.strerror or exc}")
    return status


def _done_label(model: str, replica: str | None) -> str:
    return model if replica is None else f"{model} on {replica}"


def _raise_interrupted(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name, EXIT_SIGTERM)


def _flag_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
