"""The model list: `name` or `name?key=value&key=value`, separated by commas and/or whitespace.

The entry format is the one proposed for Ollama's own preload setting (`OLLAMA_PRELOAD_MODELS`), so a list
written for one works with the other: `keep_alive` (or `keepalive`), `prompt` and `think` are request fields;
every other key is a model option, typed as bool, int, float or string.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import parse_qsl

from preloader.durations import DurationError, KeepAlive, parse_keep_alive
from preloader.names import InvalidModelName, ModelName, parse_model_name

OptionValue = bool | int | float | str | list[str]
_SEPARATORS = re.compile(r"[\s,]+")
_INT = re.compile(r"[+-]?[0-9]+", re.ASCII)
_FLOAT = re.compile(r"[+-]?([0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)([eE][+-]?[0-9]+)?", re.ASCII)
_INT64 = range(-(1 << 63), 1 << 63)
_FLOAT32_MAX = 3.4028234663852886e38

# The types of Ollama's known options (`api.Options` and its `Runner`, read by `Options.FromMap`). A value of
# another type is a 500 "option ... must be of type ..." after the request was sent; we refuse it up front.
# Keys Ollama does not know are ignored by the server, so they pass as typed by `typed_value`.
_INT_OPTIONS = frozenset(
    [
        "num_ctx",
        "num_batch",
        "num_gpu",
        "main_gpu",
        "num_thread",
        "num_keep",
        "seed",
        "num_predict",
        "top_k",
        "repeat_last_n",
        "draft_num_predict",
    ]
)
_FLOAT_OPTIONS = frozenset(
    ["temperature", "top_p", "min_p", "typical_p", "repeat_penalty", "presence_penalty", "frequency_penalty"]
)
_BOOL_OPTIONS = frozenset(["use_mmap", "numa", "penalize_newline"])
_LIST_OPTIONS = frozenset({"stop"})  # Ollama wants an array of strings; an entry gives one value
THINK_LEVELS = ("high", "medium", "low")


class EntryError(ValueError):
    pass


@dataclass(frozen=True)
class ModelEntry:
    text: str  # the name as the user wrote it, without options: what we send and log
    name: ModelName
    keep_alive: KeepAlive | None = None
    prompt: str | None = None
    think: bool | str | None = None
    options: Mapping[str, OptionValue] = field(default_factory=lambda: MappingProxyType({}))


def split_model_list(text: str) -> list[str]:
    """Entries separated by commas and/or whitespace, newlines included.

    >>> split_model_list(" a, b\\n c,,d ")
    ['a', 'b', 'c', 'd']
    """
    return [item for item in _SEPARATORS.split(text) if item]


def parse_entry(text: str) -> ModelEntry:
    """Parse one entry.

    >>> e = parse_entry("qwen3:0.6b?num_ctx=8192&keep_alive=-1&think=false&prompt=Say+hi")
    >>> e.name.display, dict(e.options), e.keep_alive.forever, e.think, e.prompt
    ('qwen3:0.6b', {'num_ctx': 8192}, True, False, 'Say hi')
    """
    raw_name, has_query, query = text.partition("?")
    try:
        name = parse_model_name(raw_name)
    except InvalidModelName as exc:
        raise EntryError(f"invalid model name {raw_name!r}: {exc}") from None
    if has_query and not query:
        raise EntryError(f"{text!r} ends with '?' but names no option")
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise EntryError(f"options of {raw_name!r} must look like key=value&key=value, got {query!r}") from None

    seen: set[str] = set()
    keep_alive: KeepAlive | None = None
    prompt: str | None = None
    think: bool | str | None = None
    options: dict[str, OptionValue] = {}
    for key, value in pairs:
        canonical = "keep_alive" if key == "keepalive" else key
        if canonical in seen:
            raise EntryError(f"option {key!r} is given twice for {raw_name!r}")
        seen.add(canonical)
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise EntryError(f"option name {key!r} of {raw_name!r} is not an identifier")
        if canonical == "keep_alive":
            try:
                keep_alive = parse_keep_alive(value)
            except DurationError as exc:
                raise EntryError(
                    f"keep_alive={value!r} of {raw_name!r}: {exc}; use seconds (-1 = forever) or 30m, 1h30m"
                ) from None
        elif canonical == "prompt":
            prompt = value
        elif canonical == "think":
            think = _think(value, raw_name)
        elif value == "":
            raise EntryError(f"option {key!r} of {raw_name!r} has no value")
        else:
            options[key] = option_value(key, value, raw_name)
    return ModelEntry(
        text=raw_name,
        name=name,
        keep_alive=keep_alive,
        prompt=prompt,
        think=think,
        options=MappingProxyType(options),
    )


def _think(value: str, model: str) -> bool | str:
    """`think` as Ollama's ThinkValue takes it: a JSON bool, or one of the level strings."""
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in THINK_LEVELS:
        return lowered
    raise EntryError(f"think={value!r} of {model!r}: use true, false, low, medium or high")


def option_value(key: str, text: str, model: str = "") -> OptionValue:
    """A model option's value, checked against the type Ollama gives that option.

    >>> option_value("num_ctx", "8192"), option_value("temperature", "1"), option_value("stop", "END")
    (8192, 1, ['END'])
    >>> option_value("num_ctx", "8k")
    Traceback (most recent call last):
    ...
    preloader.entries.EntryError: num_ctx='8k': Ollama wants an integer here (such as 8192)
    """
    where = f" of {model!r}" if model else ""
    if key in _LIST_OPTIONS:
        return [text]
    typed = typed_value(text)
    if key in _INT_OPTIONS and not (isinstance(typed, int) and not isinstance(typed, bool) and typed in _INT64):
        # Ollama would truncate 1.5 to 1 without a word; a fraction here is a typo, so it is refused too.
        raise EntryError(f"{key}={text!r}{where}: Ollama wants an integer here (such as 8192)")
    if key in _FLOAT_OPTIONS and (
        isinstance(typed, bool) or not isinstance(typed, (int, float)) or abs(typed) > _FLOAT32_MAX
    ):
        raise EntryError(f"{key}={text!r}{where}: Ollama wants a number here (such as 0.7)")
    if key in _BOOL_OPTIONS and not isinstance(typed, bool):
        raise EntryError(f"{key}={text!r}{where}: Ollama wants true or false here")
    if isinstance(typed, float) and not math.isfinite(typed):
        raise EntryError(f"{key}={text!r}{where}: the number is too large for JSON")
    return typed


def typed_value(text: str) -> OptionValue:
    """An option value as JSON should carry it: bool, int, float, else string.

    >>> [typed_value(v) for v in ("true", "False", "8192", "-1", "0.7", "1e-3", "q8_0")]
    [True, False, 8192, -1, 0.7, 0.001, 'q8_0']
    """
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    return text
