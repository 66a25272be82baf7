"""The baseline of the overhead benchmark: exactly the preloader's requests, back to back, with no checks.

usage: minimal_client.py URL NUM_PREDICT MODEL...

One keep-alive connection, the standard library only, no retries, no parsing, no output: the cheapest
program that sends what `python -m preloader` sends (GET /api/version; per model POST /api/show and the
warm POST /api/generate; GET /api/ps).
"""

import http.client
import json
import sys
from urllib.parse import urlsplit


def main(argv: list[str]) -> None:
    url, num_predict, models = urlsplit(argv[1]), int(argv[2]), argv[3:]
    connection = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port)

    def send(method: str, path: str, body: object = None) -> None:
        payload = None if body is None else json.dumps(body)
        headers = {} if body is None else {"Content-Type": "application/json"}
        connection.request(method, path, body=payload, headers=headers)
        connection.getresponse().read()

    send("GET", "/api/version")
    for model in models:
        send("POST", "/api/show", {"model": model})
        send(
            "POST",
            "/api/generate",
            {"model": model, "prompt": "Hi", "stream": False, "options": {"num_predict": num_predict}, "raw": True},
        )
    send("GET", "/api/ps")


if __name__ == "__main__":
    main(sys.argv)
