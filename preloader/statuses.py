"""The CLI's exit statuses, declared once: the CLI decides them, the report and the other modes name them."""

from __future__ import annotations

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_CONFIG = 2
EXIT_SERVER_NOT_READY = 3
EXIT_MODELS_NOT_READY = 4
EXIT_SIGINT = 130
EXIT_SIGTERM = 143
