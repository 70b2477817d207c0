"""What the report says about the machine and the suite: the installed version of every pinned
library and of every tool, and the summary of the last test run."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from scripts.report import ROOT

NOT_INSTALLED = "not installed"
JUNIT_XML = ROOT / "run" / "test-results.xml"
_PIN = re.compile(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==([^\s;#]+)")


def pinned(requirements: Path) -> list[tuple[str, str]]:
    """(name, pinned version) of every ``name==version`` line."""
    pins = []
    for line in requirements.read_text().splitlines():
        match = _PIN.match(line.strip())
        if match:
            pins.append((match.group(1), match.group(3)))
    return pins


def installed(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return NOT_INSTALLED


def package_versions(requirements: Path = ROOT / "requirements.txt") -> list[tuple[str, str, str]]:
    return [(name, version, installed(name)) for name, version in pinned(requirements)]


def _command_version(argv: list[str], pattern: str = r"\d+\.\d+") -> str:
    """The first line of ``argv``'s output (stdout and stderr) that matches ``pattern``."""
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=ROOT)
    except (FileNotFoundError, PermissionError):
        return NOT_INSTALLED
    except subprocess.TimeoutExpired:
        return "no answer within 30 s"
    for line in (result.stdout + "\n" + result.stderr).splitlines():
        if re.search(pattern, line):
            return line.strip()
    return NOT_INSTALLED if result.returncode else (result.stdout or result.stderr).strip()[:80]


def _postgresql_version(database_url: str | None) -> str:
    if not database_url or not database_url.startswith("postgresql"):
        return "not used by this build (embedded SQLite)"
    import psycopg2
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    try:
        connection = psycopg2.connect(
            host=url.host, port=url.port or 5432, user=url.username, dbname=url.database, connect_timeout=5
        )
    except psycopg2.Error as error:
        return f"not reachable ({str(error).strip()[:60]})"
    try:
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            return cursor.fetchone()[0]
    finally:
        connection.close()


def tool_versions(database_url: str | None) -> list[tuple[str, str, str]]:
    """(tool, where the version comes from, version)."""
    import sqlite3

    venv = ROOT / ".venv" / "bin"
    return [
        ("Python", "sys.version", sys.version.split()[0]),
        ("PostgreSQL server", "SHOW server_version", _postgresql_version(database_url)),
        ("SQLite library", "sqlite3.sqlite_version", sqlite3.sqlite_version),
        ("Redis server", "redis-server --version", _command_version(["redis-server", "--version"])),
        ("nginx", "nginx -v", _command_version(["nginx", "-v"])),
        ("HAProxy", "haproxy -v", _command_version(["haproxy", "-v"], r"[Vv]ersion \d")),
        ("Prometheus", "prometheus --version", _command_version(["prometheus", "--version"])),
        ("Chromium", "chromium --version", _command_version(["chromium", "--version"], r"Chromium \d")),
        ("Graphviz", "dot -V", _command_version(["dot", "-V"])),
        ("gunicorn", "gunicorn --version", _command_version([str(venv / "gunicorn"), "--version"])),
        ("Huey", "importlib.metadata", installed("huey")),
    ]


def toolchain_versions() -> list[tuple[str, str]]:
    """The report's own libraries."""
    return [
        (name, installed(name))
        for name in ("weasyprint", "markdown-it-py", "matplotlib", "Pygments", "pypdf")
    ]


# -- the test summary ---------------------------------------------------------------------------


@dataclass
class FileResult:
    tests: int = 0
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    seconds: float = 0.0


@dataclass
class SuiteSummary:
    source: str  # "junit" or "collected" or "none"
    when: str = ""
    command: str = ""
    files: dict[str, FileResult] = field(default_factory=dict)
    note: str = ""
    wall_seconds: float = 0.0

    @property
    def total(self) -> FileResult:
        total = FileResult()
        for result in self.files.values():
            for name in ("tests", "passed", "failed", "errors", "skipped"):
                setattr(total, name, getattr(total, name) + getattr(result, name))
            total.seconds += result.seconds
        return total


def _file_of(classname: str) -> str:
    parts = classname.split(".")
    for end in range(len(parts), 0, -1):
        candidate = "/".join(parts[:end]) + ".py"
        if (ROOT / candidate).is_file():
            return candidate
    return classname


def junit_summary(path: Path = JUNIT_XML) -> SuiteSummary | None:
    if not path.is_file():
        return None
    root = ElementTree.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    stamp = next((s.get("timestamp") for s in suites if s.get("timestamp")), None)
    moment = datetime.fromisoformat(stamp) if stamp else datetime.fromtimestamp(path.stat().st_mtime, UTC)
    if moment.tzinfo is None:
        moment = moment.astimezone()
    when = moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    wall = sum(float(s.get("time") or 0) for s in suites)
    files: dict[str, FileResult] = defaultdict(FileResult)
    for case in root.iter("testcase"):
        result = files[_file_of(case.get("classname", ""))]
        result.tests += 1
        result.seconds += float(case.get("time") or 0)
        if case.find("failure") is not None:
            result.failed += 1
        elif case.find("error") is not None:
            result.errors += 1
        elif case.find("skipped") is not None:
            result.skipped += 1
        else:
            result.passed += 1
    return SuiteSummary("junit", when, "make test", dict(sorted(files.items())), wall_seconds=wall)


def collected_summary() -> SuiteSummary:
    command = [
        str(ROOT / ".venv" / "bin" / "python"),
        "-m",
        "pytest",
        "--collect-only",
        "-q",
        "-p",
        "no:cacheprovider",
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)
    counts: Counter = Counter()
    for line in result.stdout.splitlines():
        if "::" in line:
            counts[line.split("::", 1)[0]] += 1
    files = {name: FileResult(tests=count) for name, count in sorted(counts.items())}
    note = "" if result.returncode == 0 else f"pytest --collect-only exited {result.returncode}"
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return SuiteSummary("collected", when, "pytest --collect-only -q", files, note)


def suite_summary() -> SuiteSummary:
    return junit_summary() or collected_summary()
