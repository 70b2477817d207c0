"""docs/api.md, the reference scripts/api_reference.py generates from a running app, documents
every operation of the app's OpenAPI document and nothing else, each with who may call it and
an example, and says "public" and "admin only" exactly where the document does."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "api.md"
REGENERATE = ".venv/bin/python scripts/api_reference.py"
METHODS = ("get", "post", "put", "patch", "delete")
HEADING = re.compile(r"^### (GET|POST|PUT|PATCH|DELETE) (/\S*)$", re.MULTILINE)

# The app's document, from create_app with the testing settings in an interpreter of its own:
# no database and no Redis are needed to build it, and the process-wide state an app sets up
# (the job queue's storage, the rate limiter) stays this test run's.
SPEC_PROGRAM = """
import json, sys
from ecommerce import create_app
from ecommerce.config import TestingConfig
from ecommerce.extensions import api

app = create_app(
    TestingConfig,
    SQLALCHEMY_DATABASE_URI="sqlite://",
    REDIS_URL=None,
    LOCAL_CACHE_SECONDS=0,
    HUEY_SQLITE_PATH=sys.argv[1],
)
with app.app_context():
    sys.stdout.write(json.dumps(api.spec.to_dict()))
"""


# The conftest's autouse Redis flush needs the test database; these checks need neither.
@pytest.fixture(autouse=True)
def _clean_redis() -> None:
    return None


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> dict:
    instance = tmp_path_factory.mktemp("instance")
    env = {
        key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "REDIS_URL", "APP_ENV")
    }
    env["INSTANCE_PATH"] = str(instance)
    result = subprocess.run(
        [sys.executable, "-c", SPEC_PROGRAM, str(instance / "huey.db")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _operations(spec: dict) -> dict[str, dict]:
    return {
        f"{method.upper()} {path}": operation
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


def _sections() -> dict[str, str]:
    """Each ``### METHOD /path`` heading of docs/api.md with the text under it."""
    text = REFERENCE.read_text()
    headings = list(HEADING.finditer(text))
    ends = [match.start() for match in headings[1:]] + [len(text)]
    return {f"{m.group(1)} {m.group(2)}": text[m.end() : end] for m, end in zip(headings, ends, strict=True)}


def test_the_reference_documents_every_operation(spec):
    missing = sorted(set(_operations(spec)) - set(_sections()))
    assert not missing, (
        f"docs/api.md has no '### METHOD /path' heading for {', '.join(missing)}; regenerate it: {REGENERATE}"
    )


def test_the_reference_documents_no_operation_the_app_lacks(spec):
    extra = sorted(set(_sections()) - set(_operations(spec)))
    assert not extra, (
        f"docs/api.md documents {', '.join(extra)}, which the OpenAPI document no longer has; "
        f"regenerate it: {REGENERATE}"
    )


def test_each_operation_says_who_may_call_it_and_shows_an_example():
    lacking = {
        heading: [part for part in ("**Who may call it:**", "**Example**", "```http") if part not in body]
        for heading, body in _sections().items()
    }
    lacking = {heading: parts for heading, parts in lacking.items() if parts}
    assert not lacking, f"sections of docs/api.md without: {lacking}"


def test_public_and_admin_only_are_said_where_the_document_says_them(spec):
    """Public: no ``security``; admin only: the 403 ``@blp.auth(role=...)`` documents, which the
    route's own summary also says with "(admin)"."""
    sections = _sections()
    wrong = []
    for key, operation in _operations(spec).items():
        who = sections.get(key, "").partition("**Who may call it:**")[2].split("\n", 1)[0]
        public = not operation.get("security")
        admin = operation.get("responses", {}).get("403", {}).get("description") == "Needs the admin role"
        if public != who.strip().startswith("Public"):
            wrong.append(
                f"{key}: {'public' if public else 'needs a token'}, docs/api.md says {who.strip()!r}"
            )
        if admin != who.strip().startswith("Admin only"):
            wrong.append(f"{key}: admin only is {admin}, docs/api.md says {who.strip()!r}")
        if admin != ("(admin)" in operation.get("summary", "")):
            wrong.append(f"{key}: the 403 and the summary {operation.get('summary')!r} disagree on admin")
    assert not wrong, "\n".join(wrong)
