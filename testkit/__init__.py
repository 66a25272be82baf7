"""What the tests and the benchmark both run: the fake Ollama, the real-server runner, the test models and
the Docker tier's images. It needs neither pytest nor anything under `tests/`, so `bench/` can import it;
the tier rules (skip or fail) stay in `tests/support/`. It is development tooling and does not ship.
"""
