"""Build the project report: ``make report`` runs ``.venv/bin/python -m scripts.report.build``.

1. Check that every document the report is made of exists (a missing one fails the build, unless
   REPORT_DRAFT=1, which puts a visible placeholder in its place).
2. Start the app on PostgreSQL + Redis (or the embedded defaults), capture it (OpenAPI, example
   requests, a cached vs uncached measurement, a Prometheus window under a mixed load, versions)
   and stop everything it started, also on error.
3. Draw the figures, lay out the HTML and render it to PDF with WeasyPrint.

Settings (environment): REPORT_OUT (default docs/report.pdf), REPORT_TITLE, REPORT_ORGANISATION,
REPORT_DATE (default today), REPORT_QUICK=1 (a short live window, for the test), REPORT_DRAFT=1,
REPORT_SEED_PRODUCTS (300), REPORT_LOAD_SECONDS (45; quick: 10), REPORT_BENCH_SECONDS (5; quick: 2),
REPORT_DATABASE_URL (postgresql://postgres@127.0.0.1:5432/ecommerce_report), REPORT_REDIS_URL
(redis://127.0.0.1:6379/4), REPORT_BUILD_DIR (run/report: the figures, the HTML and the captured
data), REPORT_REUSE_CAPTURE=1 (lay out again from the last build's captured data, without a live run).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

from scripts.report.live import log
from scripts.report.settings import Settings


def _stop_on_sigterm(signum, frame) -> None:
    # SystemExit unwinds through the live system's ``finally``: its processes are stopped.
    raise SystemExit(128 + signum)


def main() -> int:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    began = time.monotonic()
    settings = Settings.from_env()

    from scripts.report.document import Report, check_sources

    problems = check_sources()
    if problems and not settings.draft:
        print("report: the report cannot be built, its sources are missing:", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        print("report: (REPORT_DRAFT=1 builds a draft with placeholders instead)", file=sys.stderr)
        return 2
    for problem in problems:
        log(f"warning: {problem} (draft)")

    # The test summary (pytest --collect-only when there is no JUnit XML) meanwhile.
    from concurrent.futures import ThreadPoolExecutor

    from scripts.report.environment import suite_summary

    background = ThreadPoolExecutor(max_workers=1)
    suite = background.submit(suite_summary)

    settings.build_dir.mkdir(parents=True, exist_ok=True)
    captured = settings.build_dir / "capture.json"
    if os.environ.get("REPORT_REUSE_CAPTURE") == "1" and captured.is_file():
        log(f"reusing {captured}")
        live = json.loads(captured.read_text())
    else:
        from scripts.report.capture import capture

        live = capture(settings)
        captured.write_text(json.dumps(live, indent=1))

    report = Report(settings, live, settings.build_dir, suite.result())
    background.shutdown()
    document = report.html()
    (settings.build_dir / "report.html").write_text(document)

    log("rendering the PDF (WeasyPrint)")
    from weasyprint import HTML

    settings.out.parent.mkdir(parents=True, exist_ok=True)
    rendered = HTML(string=document, base_url=str(settings.build_dir)).render()
    rendered.write_pdf(settings.out)
    size = settings.out.stat().st_size / 1e6
    log(
        f"wrote {settings.out} ({len(rendered.pages)} pages, {len(report.figures.entries)} figures, "
        f"{size:.1f} MB) in {time.monotonic() - began:.0f}s"
    )
    if report.placeholders:
        log(f"DRAFT: {len(report.placeholders)} placeholder(s): " + "; ".join(report.placeholders))
    return 0


if __name__ == "__main__":
    sys.exit(main())
