"""``make report``: the report is built the way ``make report`` builds it (with a short live window,
into a temporary folder), then read back with pypdf: its seventeen parts in order, a table of
contents whose page numbers are the pages the chapters are on, numbered figures, and every path
of the app's OpenAPI document. About a minute and a half."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from pypdf import PdfReader

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TITLE = "Report under test: an e-commerce platform"
ORGANISATION = "Test Organisation of the Report"
DATE = "1 January 2030"
# The specification's order; the title page is found by its title.
CHAPTERS = [
    TITLE,
    "Executive summary",
    "Contents",
    "Introduction",
    "Project structure",
    "Table entities",
    "Development process",
    "API endpoints",
    "Database design and optimisation",
    "Caching strategies",
    "Load balancing",
    "Security measures",
    "Monitoring and performance",
    "Challenges and solutions",
    "Conclusion",
    "References",
    "Appendices",
]


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[PdfReader, list[str]]:
    folder = tmp_path_factory.mktemp("report")
    out = folder / "report.pdf"
    # A make of its own, as a shell would run it (not the jobserver of a make test around us).
    env = {key: value for key, value in os.environ.items() if key not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL"}}
    env.update(
        REPORT_QUICK="1",
        REPORT_OUT=str(out),
        REPORT_BUILD_DIR=str(folder / "build"),
        REPORT_TITLE=TITLE,
        REPORT_ORGANISATION=ORGANISATION,
        REPORT_DATE=DATE,
    )
    result = subprocess.run(
        ["make", "--no-print-directory", "report"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert result.returncode == 0, f"make report failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    reader = PdfReader(out)
    return reader, [page.extract_text() or "" for page in reader.pages]


def squash(text: str) -> str:
    """Text without white space: lines wrap anywhere, also after a hyphen or inside a path."""
    return re.sub(r"\s+", "", text)


def page_of(outline: list[tuple[str, int]], chapter: str) -> int:
    return next(page for title, page in outline if title.endswith(chapter))


def top_level_outline(reader: PdfReader) -> list[tuple[str, int]]:
    """(title, page number from 1) of each first-level bookmark (WeasyPrint makes them from h1)."""
    return [
        (item.title, reader.get_destination_page_number(item) + 1)
        for item in reader.outline
        if not isinstance(item, list)
    ]


def test_the_title_page_names_the_report_its_organisation_and_date(report):
    _, pages = report
    first = squash(pages[0])
    for wanted in (TITLE, ORGANISATION, DATE):
        assert squash(wanted) in first


def test_every_chapter_is_there_in_the_specifications_order(report):
    reader, pages = report
    outline = top_level_outline(reader)
    found, position = [], -1
    for chapter in CHAPTERS:
        following = [i for i, (title, _) in enumerate(outline) if i > position and title.endswith(chapter)]
        assert following, (
            f"no chapter {chapter!r} after {outline[position] if position >= 0 else 'the start'}"
        )
        position = following[0]
        found.append(outline[position])
    page_numbers = [page for _, page in found]
    assert page_numbers == sorted(page_numbers)
    for title, page in found:
        # The heading itself is on the page the bookmark points to.
        assert squash(title) in squash(pages[page - 1]), (title, page)


def test_the_table_of_contents_gives_each_chapters_page(report):
    reader, pages = report
    outline = dict(top_level_outline(reader))
    contents = "\n".join(pages[outline["Contents"] - 1 : outline["List of figures"] - 1])
    position = 0
    for chapter in CHAPTERS[3:]:
        title = next(t for t in outline if t.endswith(chapter))
        # The chapters' lines come in order, with their sections between them (a section may
        # bear a chapter's name: "References"), so each is looked for after the one before.
        match = re.compile(rf"^{re.escape(title)}[ .]*?(\d+)\s*$", re.M).search(contents, position)
        assert match, f"{title!r} is not in the table of contents with a page number"
        assert int(match.group(1)) == outline[title], (title, match.group(1), outline[title])
        position = match.end()


def test_figures_are_numbered_captioned_and_listed(report):
    reader, pages = report
    outline = top_level_outline(reader)
    first, body_start = page_of(outline, "List of figures"), page_of(outline, "Introduction")
    listed = set(map(int, re.findall(r"Figure (\d+):", "\n".join(pages[first - 1 : body_start - 1]))))
    body = "\n".join(pages[body_start - 1 :])
    captions = [int(n) for n in re.findall(r"Figure (\d+):", body)]
    assert len(set(captions)) >= 6
    assert sorted(set(captions)) == list(range(1, max(captions) + 1))
    assert listed == set(captions)


def test_every_openapi_path_is_in_the_report(report, app):
    _, pages = report
    paths = app.test_client().get("/api/openapi.json").get_json()["paths"]
    text = squash("".join(pages))
    missing = [path for path in paths if squash(path) not in text]
    assert not missing, f"OpenAPI paths missing from the report: {missing}"
