"""Settings → one immutable `Config`. All parsing and validation happens here, in pure functions.

Every setting is an environment variable with a CLI flag of the same meaning; the table below is the one
place both are declared, so `--help`, the README and the parser cannot drift apart.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar, cast

from preloader.durations import DurationError, KeepAlive, parse_keep_alive, parse_timeout
from preloader.entries import EntryError, ModelEntry, parse_entry, split_model_list
from preloader.errors import ConfigError
from preloader.hosts import HostError, OllamaHost, check_host, parse_host, parse_listen
from preloader.proxies import ProxyChoice, ProxyError, parse_proxy, proxy_for

_SPACE = " \t\n\r\v\f"  # ASCII whitespace only: str.strip() would also eat a no-break space inside a value
_INTEGER = re.compile(r"[+-]?[0-9]+", re.ASCII)  # not int(): it also takes non-ASCII digits, '1_0', ' 5 '
PullPolicy = Literal["never", "missing"]
LogFormat = Literal["text", "json"]
Mode = Literal["once", "watch", "check"]
Resolve = Literal["none", "all"]
MAX_WATCH_INTERVAL = 30.0  # a model that went cold is noticed within this; longer hides outages from probes
MAX_TIMEOUT_SECONDS = 9_223_372_036.0  # Go's time.Duration limit, as the durations module enforces
T = TypeVar("T")


@dataclass(frozen=True)
class Parser(Generic[T]):
    """A value parser with the sentence that says what it accepts: the bounds are written once, in the call."""

    parse: Callable[[str], T]
    accepted: str

    def __call__(self, text: str) -> T:
        return self.parse(text)


def parse_bool(text: str) -> bool:
    """Booleans as people write them in .env files.

    >>> parse_bool("Yes"), parse_bool("0")
    (True, False)
    """
    lowered = text.strip(_SPACE).lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("")


def int_range(low: int, high: int) -> Parser[int]:
    def parse(text: str) -> int:
        if not _INTEGER.fullmatch(text.strip(_SPACE)):
            raise ValueError("")
        value = int(text)
        if not low <= value <= high:
            raise ValueError("")
        return value

    return Parser(parse, f"an integer from {low} to {high}")


def choice(*choices: str) -> Parser[str]:
    def parse(text: str) -> str:
        if text.strip(_SPACE).lower() not in choices:
            raise ValueError("")
        return text.strip(_SPACE).lower()

    return Parser(parse, f"{', '.join(choices[:-1])} or {choices[-1]}")


def timeout_between(low: float, high: float, low_text: str, high_text: str) -> Parser[float]:
    def parse(text: str) -> float:
        seconds = parse_timeout(text)
        if not low <= seconds <= high:
            raise ValueError("")
        return seconds

    return Parser(parse, f"a duration from {low_text} to {high_text} (30s, 5m, 1h30m) or seconds")


def optional(parser: Parser[T], absent: str) -> Parser[T | None]:
    """For settings whose absence means "let the server decide"."""

    def parse(text: str) -> T | None:
        return parser(text) if text.strip(_SPACE) else None

    return Parser(parse, f"{parser.accepted}; empty: {absent}")


BOOL = Parser(parse_bool, "true or false (also 1/0, yes/no, on/off)")
TIMEOUT = timeout_between(0.001, MAX_TIMEOUT_SECONDS, "1ms", "about 292 years")
KEEP_ALIVE = optional(
    Parser(parse_keep_alive, "integer seconds (-1 = forever, 0 = unload) or a Go duration such as 30m, 1h30m, -1s"),
    "the server's default",
)


@dataclass(frozen=True)
class Setting:
    """One setting, declared once: --help, the README table, .env.example and the parser all read this."""

    var: str
    flag: str
    metavar: str
    doc: str  # Markdown; --help shows it without the markup
    default: str = ""  # as a user would write it; "" = unset
    parser: Parser[Any] | None = None  # None: load_config reads it with rules of its own (hosts, lists, secrets)
    accepted: str = ""  # for the settings without a parser
    is_switch: bool = False  # a flag that takes no value (`--best-effort` means "true")
    example: str | None = None  # .env.example sets it to this, uncommented
    in_env_example: bool = True  # False: .env.example documents it in another section

    @property
    def what_is_accepted(self) -> str:
        return self.parser.accepted if self.parser is not None else self.accepted

    @property
    def help(self) -> str:
        return re.sub(r"\*\*|`", "", self.doc)


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "OLLAMA_PRELOAD_MODELS",
        "--models",
        "LIST",
        "Models to warm, separated by commas and/or whitespace (newlines too). An entry is `name` or "
        "`name?key=value&key=value`: `keep_alive` (or `keepalive`), `prompt`, `think` are request fields; any other "
        "key is a model option (`num_ctx=8192`, `num_gpu=99`, `temperature=0`), type-checked for the options Ollama "
        "knows. Use the load-time options of your real traffic, or Ollama reloads the model on its first real "
        "request. Values are URL-encoded (`prompt=Say+hi`). Required.",
        accepted="NAME or NAME?key=value&key=value by Ollama's name rules",
        example="smollm2:135m",
    ),
    Setting(
        "OLLAMA_MODELS",
        "--fallback-models",
        "LIST",
        "The list, only when `OLLAMA_PRELOAD_MODELS` is empty. To Ollama this is its models **directory**, so a "
        "value that looks like a path (`/…`, `~…`, `./…`) is ignored with a warning, and the compose file never "
        "passes it to the server.",
        accepted="a model list, as OLLAMA_PRELOAD_MODELS",
    ),
    Setting(
        "OLLAMA_HOST",
        "--host",
        "HOST",
        "The server, parsed exactly as Ollama parses it: `ollama:11434` → `http://ollama:11434`; bare host → port "
        "11434; `http://h` → port **80**; `https://h` → 443; `[::1]:11434`; quotes and spaces trimmed; `0.0.0.0` "
        "connects to this machine; an optional `/path` prefix for reverse proxies. Credentials (`user:pw@host`), "
        "schemes other than http/https, spaces, `?` and `#` are refused; credentials are never printed.",
        "http://127.0.0.1:11434",
        accepted="[http://|https://]host[:port][/path], as Ollama reads it (credentials for a proxy in front of "
        "Ollama go in OLLAMA_API_KEY)",
    ),
    Setting(
        "OLLAMA_PRELOAD_HOSTS",
        "--hosts",
        "LIST",
        "Several servers (replicas), separated by commas and/or whitespace, each read exactly like `OLLAMA_HOST`; "
        "when set it replaces `OLLAMA_HOST`. Every model is warmed on every server, the servers in parallel, and "
        "the run succeeds only when every model is resident on every one. Listing a server twice is an error.",
        accepted="servers as OLLAMA_HOST reads them, separated by commas or spaces, each once",
    ),
    Setting(
        "OLLAMA_PRELOAD_RESOLVE",
        "--resolve",
        "POLICY",
        "`none`: connect to each server by its name. `all`: look each name up in the system resolver (A and AAAA) "
        "and treat every address as a replica of its own, with the name's scheme, port and path (a Compose "
        "service scaled up, a Kubernetes headless Service); requests go to the address, whose `Host` header every "
        "Ollama accepts. A name with no address yet counts as a server not ready. http only: a certificate "
        "names hosts, not addresses.",
        "none",
        choice("none", "all"),
    ),
    Setting(
        "OLLAMA_PRELOAD_MODE",
        "--mode",
        "MODE",
        "`once`: wait, warm, verify, exit (a one-shot sidecar or CI step). `watch`: the same, then keep the models "
        "resident for as long as it runs and serve `/ready`, `/live`, `/metrics`. `check`: one look at `/api/ps`, "
        "nothing loaded and no keep-alive touched; exit 0 (resident), 4 (not), 3 (server unreachable): a probe.",
        "once",
        choice("once", "watch", "check"),
    ),
    Setting(
        "OLLAMA_PRELOAD_KEEP_ALIVE",
        "--keep-alive",
        "DURATION",
        "Keep-alive of each warm request unless the entry sets its own: Go durations (`30m`, `1h30m`, `-1s`), "
        "integer seconds, `-1` or any negative = forever, `0` = unload. Integers are sent as JSON numbers (the API "
        'refuses the string `"-1"`). Unset: the server\'s `OLLAMA_KEEP_ALIVE` applies.',
        parser=KEEP_ALIVE,
    ),
    Setting(
        "OLLAMA_PRELOAD_NUM_PREDICT",
        "--num-predict",
        "N",
        "Tokens generated by a warm request of a completion model.",
        "1",
        int_range(1, 5),
    ),
    Setting(
        "OLLAMA_PRELOAD_WAIT_TIMEOUT",
        "--wait-timeout",
        "DURATION",
        "How long to wait for the server to become healthy.",
        "5m",
        TIMEOUT,
    ),
    Setting(
        "OLLAMA_PRELOAD_WARM_TIMEOUT",
        "--warm-timeout",
        "DURATION",
        "How long one warm request may take. Keep it longer than your slowest load: Ollama aborts a load whose "
        "client hangs up.",
        "30m",
        TIMEOUT,
    ),
    Setting(
        "OLLAMA_PRELOAD_ATTEMPTS",
        "--attempts",
        "N",
        "Attempts per model for transient failures (refused or reset connections, 503, other 5xx).",
        "3",
        int_range(1, 10),
    ),
    Setting(
        "OLLAMA_PRELOAD_CONCURRENCY",
        "--concurrency",
        "N",
        "Models warmed at once. On Ollama 0.11.4 (CPU) 4 tiny models warmed 4 at a time took about half the "
        "sequential time; current servers load one model at a time, and concurrent loads of large models compete "
        "for memory, so the default stays 1 (`BENCHMARKS.md`).",
        "1",
        int_range(1, 16),
    ),
    Setting(
        "OLLAMA_PRELOAD_PULL",
        "--pull",
        "POLICY",
        "`never` (pulling is `model_puller`'s job) or `missing`: pull a model the server lacks, logging progress, "
        "then warm it.",
        "never",
        choice("never", "missing"),
    ),
    Setting(
        "OLLAMA_PRELOAD_BEST_EFFORT",
        "--best-effort",
        "BOOL",
        "Log failures but exit 0 (statuses 3 and 4 become 0), for stacks whose app must start anyway.",
        "false",
        BOOL,
        is_switch=True,
    ),
    Setting(
        "OLLAMA_PRELOAD_LOG_FORMAT",
        "--log-format",
        "FORMAT",
        "`text`: one readable line per event. `json`: every line is one JSON object, the summary included.",
        "text",
        choice("text", "json"),
    ),
    Setting(
        "OLLAMA_PRELOAD_REPORT",
        "--report",
        "PATH",
        "Also write a JSON report of the run to this path. Checked before anything is sent (exit 2 for a missing "
        "or unwritable directory, or a directory). A regular file is replaced atomically; a device, a FIFO or "
        "`/dev/stdout` is written in place, never replaced; a FIFO nobody reads gives an error line, never a wait.",
        accepted="a file path",
    ),
    Setting(
        "OLLAMA_API_KEY",
        "--api-key",
        "KEY",
        "Sent as `Authorization: Bearer …`, for an Ollama behind an authenticating proxy. Never logged. Prefer the "
        "variable: flags are visible to other users of the machine in `ps`.",
        accepted="printable ASCII on one line (the key itself is never shown)",
    ),
    Setting(
        "OLLAMA_MAX_LOADED_MODELS",
        "--max-loaded-models",
        "N",
        "The server's own setting, if you know it (compose passes it): listing more models than this is warned "
        "about before warming.",
        parser=optional(int_range(0, 1_000_000), "unknown"),
        in_env_example=False,
    ),
    Setting(
        "OLLAMA_PRELOAD_WATCH_INTERVAL",
        "--watch-interval",
        "DURATION",
        "Watch mode: how often `/api/ps` is read. A model that went cold is re-warmed within one interval plus its "
        "load.",
        "10s",
        timeout_between(1.0, MAX_WATCH_INTERVAL, "1s", "30s"),
    ),
    Setting(
        "OLLAMA_PRELOAD_LISTEN",
        "--listen",
        "HOST:PORT",
        "Watch mode: where `/ready`, `/live` and `/metrics` are served; set it empty to serve nothing.",
        "0.0.0.0:9464",
        accepted="host:port, [ipv6]:port, :port, or empty",
    ),
    Setting(
        "OLLAMA_PRELOAD_VERBOSE",
        "--verbose",
        "BOOL",
        "Log every request (to stderr) and print a traceback for internal errors.",
        "false",
        BOOL,
        is_switch=True,
    ),
)
SETTINGS_BY_VAR = {setting.var: setting for setting in SETTINGS}


@dataclass(frozen=True)
class Target:
    """One server as configured (by name or address), with the proxy Ollama's client would use for it."""

    host: OllamaHost
    proxy: ProxyChoice = field(default_factory=lambda: ProxyChoice(None))


@dataclass(frozen=True)
class Config:
    host: OllamaHost
    models: tuple[ModelEntry, ...]
    mode: Mode = "once"
    watch_interval: float = 10.0
    listen: tuple[str, int] | None = ("0.0.0.0", 9464)
    keep_alive: KeepAlive | None = None
    num_predict: int = 1
    wait_timeout: float = 300.0
    warm_timeout: float = 1800.0
    attempts: int = 3
    concurrency: int = 1
    pull: PullPolicy = "never"
    best_effort: bool = False
    log_format: LogFormat = "text"
    report_path: Path | None = None
    api_key: str | None = field(default=None, repr=False)
    proxy: ProxyChoice = field(default_factory=lambda: ProxyChoice(None))  # its repr hides a proxy password
    max_loaded_models: int | None = None
    verbose: bool = False
    warnings: tuple[str, ...] = ()  # things worth telling the user that are not errors
    hosts: tuple[Target, ...] = ()  # OLLAMA_PRELOAD_HOSTS; empty: `host` alone
    resolve: Resolve = "none"

    @property
    def targets(self) -> tuple[Target, ...]:
        return self.hosts or (Target(self.host, self.proxy),)

    @property
    def per_replica(self) -> bool:
        """Whether results are labelled by replica: one plain target keeps today's output exactly."""
        return len(self.targets) > 1 or self.resolve == "all"


def load_config(env: Mapping[str, str], flags: Mapping[str, str] | None = None) -> Config:
    """Build the Config from the environment, with flags (keyed by variable name) taking precedence.

    All problems are collected, so a user fixes them in one round; nothing here does I/O.
    """
    flags = flags or {}
    problems: list[str] = []
    warnings: list[str] = []

    def raw(var: str) -> tuple[str, str]:
        """The value and the label to blame for it: the flag if one was given, else the variable."""
        if var in flags:
            return flags[var], SETTINGS_BY_VAR[var].flag
        return env.get(var, ""), var

    def get(var: str) -> Any:
        """Parse one setting by its declaration; on a bad value record the problem and go on with the default."""
        setting = SETTINGS_BY_VAR[var]
        assert setting.parser is not None, var
        value, label = raw(var)
        try:
            return setting.parser(value.strip(_SPACE) or setting.default)
        except (ValueError, DurationError) as exc:
            reason = f": {exc}" if str(exc) else ""
            problems.append(f"{label}={value!r} is invalid{reason}; accepted: {setting.what_is_accepted}")
            return setting.parser(setting.default)

    resolve = get("OLLAMA_PRELOAD_RESOLVE")
    hosts = _hosts(raw, env, problems, warnings, resolve)
    if hosts:  # OLLAMA_PRELOAD_HOSTS replaces OLLAMA_HOST, which compose files often set anyway: not read
        host, proxy = hosts[0].host, hosts[0].proxy
    else:
        host_text, host_label = raw("OLLAMA_HOST")
        host = parse_host(host_text)
        try:
            check_host(host_text)
        except HostError as exc:
            # Credentials never reach a message; other values are shown so the user sees what was read.
            shown = "" if "credentials" in str(exc) else f"={host_text!r}"
            problems.append(
                f"{host_label}{shown} is invalid: {exc}; accepted: {SETTINGS_BY_VAR['OLLAMA_HOST'].accepted}"
            )
        proxy = _proxy(host.base_url, env, problems, warnings) if not problems else ProxyChoice(None)
        if resolve == "all" and host.scheme == "https":
            problems.append(_https_by_address(host))
    models = _models(raw, problems, warnings)
    keep_alive = get("OLLAMA_PRELOAD_KEEP_ALIVE")
    num_predict = get("OLLAMA_PRELOAD_NUM_PREDICT")
    wait_timeout = get("OLLAMA_PRELOAD_WAIT_TIMEOUT")
    warm_timeout = get("OLLAMA_PRELOAD_WARM_TIMEOUT")
    attempts = get("OLLAMA_PRELOAD_ATTEMPTS")
    concurrency = get("OLLAMA_PRELOAD_CONCURRENCY")
    pull = get("OLLAMA_PRELOAD_PULL")
    best_effort = get("OLLAMA_PRELOAD_BEST_EFFORT")
    log_format = get("OLLAMA_PRELOAD_LOG_FORMAT")
    verbose = get("OLLAMA_PRELOAD_VERBOSE")
    mode = get("OLLAMA_PRELOAD_MODE")
    watch_interval = get("OLLAMA_PRELOAD_WATCH_INTERVAL")
    listen_text, listen_label = raw("OLLAMA_PRELOAD_LISTEN")
    if "OLLAMA_PRELOAD_LISTEN" not in flags and "OLLAMA_PRELOAD_LISTEN" not in env:
        listen_text = SETTINGS_BY_VAR["OLLAMA_PRELOAD_LISTEN"].default  # unset: the default; set but empty: off
    try:
        listen = parse_listen(listen_text)
    except ValueError as exc:
        problems.append(
            f"{listen_label}={listen_text!r} is invalid: {exc}; accepted: "
            + SETTINGS_BY_VAR["OLLAMA_PRELOAD_LISTEN"].accepted
        )
        listen = None
    max_loaded = get("OLLAMA_MAX_LOADED_MODELS")
    report_text, report_label = raw("OLLAMA_PRELOAD_REPORT")
    if report_text.strip(_SPACE).endswith("/"):
        problems.append(
            f"{report_label}={report_text!r} is a directory; accepted: "
            + SETTINGS_BY_VAR["OLLAMA_PRELOAD_REPORT"].accepted
        )
    api_key_text, api_key_label = raw("OLLAMA_API_KEY")
    api_key = api_key_text.strip(_SPACE) or None
    if api_key and any(ord(char) < 32 or ord(char) == 127 for char in api_key):
        # The value is a secret: name the problem, never the value.
        problems.append(
            f"{api_key_label} contains a control character (a line break?), which cannot go into an HTTP "
            "header; accepted: the key on one line"
        )
    elif api_key and not api_key.isascii():
        # requests would send latin-1 bytes (or fail), curl UTF-8 ones: no two clients agree on such a header.
        problems.append(
            f"{api_key_label} contains a non-ASCII character, which an HTTP header cannot carry reliably; "
            "accepted: printable ASCII (the key itself is not shown)"
        )

    if problems:
        raise ConfigError(problems)
    return Config(
        host=host,
        models=models,
        keep_alive=keep_alive,
        num_predict=num_predict,
        wait_timeout=wait_timeout,
        warm_timeout=warm_timeout,
        attempts=attempts,
        concurrency=concurrency,
        pull=cast(PullPolicy, pull),
        best_effort=best_effort,
        log_format=cast(LogFormat, log_format),
        report_path=Path(report_text.strip(_SPACE)) if report_text.strip(_SPACE) else None,
        api_key=api_key,
        proxy=proxy,
        max_loaded_models=max_loaded or None,
        verbose=verbose,
        mode=cast(Mode, mode),
        watch_interval=watch_interval,
        listen=listen,
        warnings=tuple(warnings),
        hosts=hosts,
        resolve=cast(Resolve, resolve),
    )


def _hosts(
    raw: Callable[[str], tuple[str, str]],
    env: Mapping[str, str],
    problems: list[str],
    warnings: list[str],
    resolve: str,
) -> tuple[Target, ...]:
    text, label = raw("OLLAMA_PRELOAD_HOSTS")
    accepted = SETTINGS_BY_VAR["OLLAMA_PRELOAD_HOSTS"].accepted
    targets: list[Target] = []
    seen: dict[str, str] = {}
    for item in split_model_list(text):
        try:
            check_host(item)
        except HostError as exc:
            shown = "" if "credentials" in str(exc) else f" {item!r}"
            problems.append(f"{label}:{shown} is invalid: {exc}; accepted: {accepted}")
            continue
        host = parse_host(item)
        if host.base_url in seen:
            problems.append(
                f"{label}: {item!r} is the same server as {seen[host.base_url]!r} ({host.base_url}); list each "
                "server once"
            )
            continue
        seen[host.base_url] = item
        if resolve == "all" and host.scheme == "https":
            problems.append(_https_by_address(host))
        targets.append(Target(host, _proxy(host.base_url, env, problems, warnings)))
    # Each target's proxy warnings are the same sentence: say it once.
    warnings[:] = list(dict.fromkeys(warnings))
    return tuple(targets)


def _https_by_address(host: OllamaHost) -> str:
    return (
        f"OLLAMA_PRELOAD_RESOLVE=all cannot reach {host.url} by address: a certificate names hosts, not addresses; "
        "accepted: http servers with OLLAMA_PRELOAD_RESOLVE=all, or https replicas listed by name in "
        "OLLAMA_PRELOAD_HOSTS with OLLAMA_PRELOAD_RESOLVE=none"
    )


def _models(raw: Callable[[str], tuple[str, str]], problems: list[str], warnings: list[str]) -> tuple[ModelEntry, ...]:
    text, label = raw("OLLAMA_PRELOAD_MODELS")
    if not text.strip(_SPACE):
        fallback, fallback_label = raw("OLLAMA_MODELS")
        if _looks_like_path(fallback.strip(_SPACE)):
            warnings.append(
                f"{fallback_label}={fallback.strip(_SPACE)!r} looks like a path: it is Ollama's models-directory "
                "variable, not a model list, so it is ignored; list models in OLLAMA_PRELOAD_MODELS"
            )
        elif fallback.strip(_SPACE):
            text, label = fallback, fallback_label
    items = split_model_list(text)
    if not items:
        problems.extend(warnings)  # an ignored OLLAMA_MODELS path is the likely reason the list is empty
        warnings.clear()
        problems.append(
            f"{label}={text!r} is invalid: no model listed; accepted: model names separated by commas or "
            "spaces, e.g. OLLAMA_PRELOAD_MODELS=llama3.2,nomic-embed-text"
        )
        return ()
    entries: list[ModelEntry] = []
    seen: dict[str, str] = {}
    for item in items:
        try:
            entry = parse_entry(item)
        except EntryError as exc:
            problems.append(f"{label}: {exc}; accepted: {SETTINGS_BY_VAR['OLLAMA_PRELOAD_MODELS'].accepted}")
            continue
        if entry.name.key in seen:
            problems.append(
                f"{label}: {item!r} names the same model as {seen[entry.name.key]!r}; list each model once "
                "(warming it twice with different options would reload it)"
            )
            continue
        seen[entry.name.key] = item
        entries.append(entry)
    return tuple(entries)


def _proxy(target: str, env: Mapping[str, str], problems: list[str], warnings: list[str]) -> ProxyChoice:
    """The proxy for our server, as Ollama's Go client picks it; a proxy's credentials never reach a message."""
    for variable in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"):
        if env.get(variable) and parse_proxy(env[variable]) is None:
            warnings.append(
                f"{variable} is not a URL Ollama's client can parse; like that client, this run ignores it "
                "(the value is not shown: it may hold a password)"
            )
    try:
        return proxy_for(target, env)
    except ProxyError as exc:
        problems.append(f"{exc}; accepted: http://[user:password@]proxy:port")
        return ProxyChoice(None)


def _looks_like_path(text: str) -> bool:
    return text.startswith(("/", "~", "./", "../", ".\\")) or text in (".", "..")
