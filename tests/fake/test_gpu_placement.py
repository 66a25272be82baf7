"""The WHERE column on GPU hosts: no GPU here, so the fake reports the sizes real servers report in `/api/ps`.

Expected texts follow `ollama ps` (cmd/cmd.go, ListRunningHandler): 0 bytes in VRAM → 100% CPU, all of it →
100% GPU, more than the model's size → Unknown, else the CPU share rounded half away from zero, then the rest.
"""

from __future__ import annotations

import json

import pytest

from testkit.fake_ollama import FakeOllama
from tests.fake.conftest import PYTHON, settings

GIB = 1024**3

CASES = [
    # gemma3:4b fully offloaded (size and size_vram as a user's /api/ps showed them, nirmato-ollama#13)
    ("gemma3:latest", 5_964_735_424, 5_964_735_424, "100% GPU"),
    # a 23.4 GiB model with 17.8 GiB offloaded (the server log of ollama#10823): 5.6/23.4 = 23.9% on CPU
    ("qwq:32b", round(23.4 * GIB), round(17.8 * GIB), "24%/76% CPU/GPU"),
    # CPU only, as on these machines
    ("smollm2:135m", 134_217_728, 0, "100% CPU"),
    # exactly half a percent: Go's math.Round goes away from zero (50.5 → 51), Python's round() would give 50
    ("half:latest", 200, 99, "51%/49% CPU/GPU"),
    # more in VRAM than the model's size (seen on some drivers): ollama ps says Unknown, so do we
    ("odd:latest", 100, 120, "Unknown"),
]


@pytest.mark.parametrize(("name", "size", "size_vram", "where"), CASES, ids=[case[3] for case in CASES])
def test_the_where_column_reports_the_gpu_cpu_split_as_ollama_ps_does(
    fake: FakeOllama, name: str, size: int, size_vram: int, where: str
) -> None:
    fake.add_model(name, size=size, size_vram=size_vram)
    result = PYTHON.run(**settings(fake, name, OLLAMA_PRELOAD_LOG_FORMAT="json"))
    assert result.returncode == 0, result.stdout
    resident = [json.loads(line) for line in result.stdout.splitlines() if '"event": "resident"' in line]
    assert [line["where"] for line in resident] == [where]
    text = PYTHON.run(**settings(fake, name))
    assert f"({where}, expires" in text.stdout
