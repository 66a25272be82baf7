"""The model list: `name` or `name?key=value&key=value`, separated by commas and/or whitespace.

The entry format is the one proposed for Ollama's own preload setting (`OLLAMA_PRELOAD_MODELS`), so a list
written for one works with the other: `keep_alive` (or `keepalive`), `prompt` and `think` are request fields;
every other key is a model option, typed as bool, int, float or string.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import parse_qsl

from preloader.durations import DurationError, KeepAlive, parse_keep_alive
from preloader.names import InvalidModelName, ModelName, parse_model_name

OptionValue = bool | int | float | str | list[str]
_LIST_OPTIONS = {"stop"}  # Ollama wants these as arrays; an entry gives one value
_SEPARATORS = re.compile(r"[\s,]+")
_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?")


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
            typed = typed_value(value)
            if not isinstance(typed, (bool, str)):
                raise EntryError(f"think={value!r} of {raw_name!r}: use true, false, low, medium or high")
            think = typed
        elif value == "":
            raise EntryError(f"option {key!r} of {raw_name!r} has no value")
        elif key in _LIST_OPTIONS:
            options[key] = [value]
        else:
            options[key] = typed_value(value)
    return ModelEntry(
        text=raw_name,
        name=name,
        keep_alive=keep_alive,
        prompt=prompt,
        think=think,
        options=MappingProxyType(options),
    )


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
