"""Every error the preloader raises on purpose. The CLI maps these to exit statuses in one place."""

from __future__ import annotations


class PreloaderError(Exception):
    """Base class: the message is meant for the user, complete and actionable."""


class ConfigError(PreloaderError):
    """One or more settings are invalid. Raised before any request is sent."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class ServerNotReady(PreloaderError):
    """The server did not answer within the wait timeout."""


class Interrupted(PreloaderError):
    """A signal asked us to stop."""

    def __init__(self, signal_name: str, exit_status: int) -> None:
        super().__init__(f"interrupted by {signal_name}")
        self.signal_name = signal_name
        self.exit_status = exit_status


# Errors of the HTTP client. They carry what the server said, not what we make of it: the warm step decides.


class OllamaError(Exception):
    """Talking to the Ollama server failed."""

    def __init__(self, message: str, *, url: str) -> None:
        super().__init__(message)
        self.url = url


class OllamaUnreachable(OllamaError):
    """No HTTP answer at all: refused, reset, DNS failure, or the connection dropped mid-request."""


class OllamaBadResponse(OllamaError):
    """The server answered, but not with what the endpoint promises: not JSON, not an object, fields of the
    wrong type, or a body cut off before its end. `incomplete` (cut off) is worth another attempt, like a
    reset connection; a complete but malformed answer will be the same next time."""

    def __init__(self, message: str, *, url: str, incomplete: bool = False) -> None:
        super().__init__(message, url=url)
        self.incomplete = incomplete


class OllamaTimeout(OllamaError):
    """The server accepted the connection but did not answer within our timeout."""

    def __init__(self, message: str, *, url: str, timeout: float) -> None:
        super().__init__(message, url=url)
        self.timeout = timeout


class OllamaResponseError(OllamaError):
    """The server answered with an error: its HTTP status and its own `error` text."""

    def __init__(self, error: str, *, status: int, url: str, in_stream: bool = False) -> None:
        # An error line inside a streamed 200 says nothing about HTTP; only a real error status is worth showing.
        super().__init__(error if in_stream else f"{error} (HTTP {status})", url=url)
        self.error = error
        self.status = status
