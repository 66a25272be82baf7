"""A second baseline for the overhead benchmark: the minimal client, but on the package's runtime libraries.

usage: minimal_client_requests.py URL NUM_PREDICT MODEL...

Exactly the requests of minimal_client.py, sent through a `requests.Session`, with `tenacity` imported as
the package must import it. The difference between this and minimal_client.py is what the two required
dependencies cost; the difference between the package and this is the package's own code.
"""

import sys

import requests
import tenacity  # noqa: F401  (imported for its start-up cost only: the package cannot avoid it)


def main(argv: list[str]) -> None:
    url, num_predict, models = argv[1].rstrip("/"), int(argv[2]), argv[3:]
    session = requests.Session()

    def send(method: str, path: str, body: object = None) -> None:
        session.request(method, url + path, json=body).content  # noqa: B018  (read the whole answer)

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
