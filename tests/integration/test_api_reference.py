"""scripts/api_reference.py end to end: it starts its own app (gunicorn and the worker on
SQLite in a temporary folder), captures an answer for every operation, writes the Markdown and
the JSON, and stops and removes what it started."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
METHODS = ("get", "post", "put", "patch", "delete")


# The conftest's autouse Redis flush needs the test database; the script's app needs neither.
@pytest.fixture(autouse=True)
def _clean_redis() -> None:
    return None


def test_the_script_captures_a_successful_answer_for_every_operation(tmp_path):
    markdown, data_path = tmp_path / "api.md", tmp_path / "api.json"
    result = subprocess.run(
        [sys.executable, "scripts/api_reference.py", "--output", str(markdown), "--json", str(data_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    data = json.loads(data_path.read_text())

    documented = {
        f"{method.upper()} {path}" for path, item in data["openapi"]["paths"].items() for method in item
    }
    documented = {key for key in documented if key.split()[0].lower() in METHODS}
    captured = {f"{op['method']} {op['path']}": op for op in data["operations"]}
    assert set(captured) == documented
    unanswered = [key for key, op in captured.items() if not op["examples"]]
    assert not unanswered, f"no example captured for {unanswered}"
    failed = {
        key: op["examples"][0]["response"]["status"]
        for key, op in captured.items()
        if not 200 <= op["examples"][0]["response"]["status"] < 300
    }
    assert not failed, f"operations whose example is not a success: {failed}"

    text = markdown.read_text()
    for key in documented:
        assert f"\n### {key}\n" in text, key
    assert "<access token>" in text and "Idempotency-Key: " in text

    # What it started is gone: the server no longer answers, its folder is removed.
    with pytest.raises(requests.ConnectionError):
        requests.get(data["base_url"] + "/healthz", timeout=2)
    folder = re.search(r"instance folder (\S+):", result.stderr)
    assert folder and not Path(folder.group(1)).exists(), result.stderr
