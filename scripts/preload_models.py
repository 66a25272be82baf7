#!/usr/bin/env python3
"""Run the preloader from a checkout without installing it (its dependencies, requests and tenacity, must be
importable). Same flags, variables and exit statuses as `ollama-preload`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from preloader.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
