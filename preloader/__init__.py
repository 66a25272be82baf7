"""ollama-preloader: load the models an Ollama stack needs, prove they are loaded, exit with a trustworthy status."""

__version__ = "0.2.0"
