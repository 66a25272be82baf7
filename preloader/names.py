"""Model names by Ollama's rules (`types/model/name.go`): validation, normalisation, cloud routing.

Names are validated before anything is sent so that a typo is a configuration error (exit 2), and they are
normalised the way the server reports them (`/api/ps` says `llama3.2:latest` for a request of `llama3.2`).
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"
_MISSING = "!MISSING!"  # what Ollama puts where a separator promised a part that is absent
_SOURCE_SUFFIXES = (":cloud", ":local")


class InvalidModelName(ValueError):
    pass


@dataclass(frozen=True)
class ModelName:
    host: str
    namespace: str
    model: str
    tag: str
    cloud: bool  # served by ollama.com: nothing to load locally

    @property
    def display(self) -> str:
        """The name as the server reports it (`DisplayShortest`): model and tag always present.

        >>> parse_model_name("llama3.2").display
        'llama3.2:latest'
        >>> parse_model_name("registry.ollama.ai/huihui_ai/qwen2.5-abliterate:14b").display
        'huihui_ai/qwen2.5-abliterate:14b'
        """
        prefix = ""
        if self.host.lower() != DEFAULT_HOST:
            prefix = f"{self.host}/{self.namespace}/"
        elif self.namespace.lower() != DEFAULT_NAMESPACE:
            prefix = f"{self.namespace}/"
        return f"{prefix}{self.model}:{self.tag}"

    @property
    def key(self) -> str:
        """What two names must share to be the same model: lookups on the server ignore case."""
        return self.display.lower()


def parse_model_name(text: str) -> ModelName:
    """Parse and validate `[host/][namespace/]model[:tag]` like Ollama's `ParseName`.

    >>> parse_model_name("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M").namespace
    'bartowski'
    >>> parse_model_name("gpt-oss:120b-cloud").cloud
    True
    >>> parse_model_name("my.ns/model")
    Traceback (most recent call last):
    ...
    preloader.names.InvalidModelName: namespace "my.ns" may not contain "."
    """
    name = text
    source = ""
    for suffix in _SOURCE_SUFFIXES:
        # `name:tag:cloud` / `name:tag:local` pick where a model runs; `name:cloud` is a plain tag.
        if name.endswith(suffix) and name.count(":", name.rfind("/") + 1) > 1:
            name, source = name[: -len(suffix)], suffix[1:]
    host, namespace, model, tag = _parse_bare(name)
    for kind, part in (("host", host), ("namespace", namespace), ("model", model), ("tag", tag)):
        if part is not None:
            _check_part(kind, part)
    tag = tag or DEFAULT_TAG
    cloud = source == "cloud" or (source != "local" and (tag == "cloud" or tag.endswith("-cloud")))
    return ModelName(
        host=host or DEFAULT_HOST,
        namespace=namespace or DEFAULT_NAMESPACE,
        model=model or "",
        tag=tag,
        cloud=cloud,
    )


def _parse_bare(text: str) -> tuple[str | None, str | None, str | None, str | None]:
    """Ollama's `ParseNameBare`: split from the right; a `:` is a tag only after the last `/`."""
    rest = text
    tag = None
    if rest.rfind(":") > rest.rfind("/"):
        rest, tag = _cut_promised(rest, ":")
    if "/" not in rest:
        return None, None, rest, tag
    rest, model = _cut_promised(rest, "/")
    if "/" not in rest:
        return None, rest, model, tag
    rest, namespace = _cut_promised(rest, "/")
    _scheme, sep, host = rest.partition("://")
    return (host if sep else rest), namespace, model, tag


def _cut_promised(text: str, sep: str) -> tuple[str, str]:
    before, _, after = text.rpartition(sep)
    return before or _MISSING, after or _MISSING


_LIMITS = {"host": 350, "namespace": 80, "model": 80, "tag": 80}


def _check_part(kind: str, part: str) -> None:
    if part == _MISSING:
        raise InvalidModelName(f"the {kind} part is empty")
    if not 1 <= len(part) <= _LIMITS[kind]:
        raise InvalidModelName(f"{kind} must be 1-{_LIMITS[kind]} characters long")
    if not _word_char(part[0]):
        raise InvalidModelName(f'{kind} "{part}" must start with a letter, digit or "_"')
    for char in part[1:]:
        if char == "." and kind == "namespace":
            raise InvalidModelName(f'namespace "{part}" may not contain "."')
        if char == ":" and kind == "host":
            continue
        if not (_word_char(char) or char in "-."):
            raise InvalidModelName(f'{kind} "{part}" may not contain {char!r}')


def _word_char(char: str) -> bool:
    return char.isascii() and (char.isalnum() or char == "_")
