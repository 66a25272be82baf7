"""Benchmarks of ollama-preloader against the alternatives, run side by side in one run: `python -m bench`.

Nothing here runs at import time; `bench.cli.main` is the entry point. See BENCHMARKS.md for the results.
"""
