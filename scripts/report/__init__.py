"""The project report, ``docs/report.pdf``, built by ``make report``.

The chapters' text comes from the Markdown in ``docs/``; the figures and tables are made at build
time from a running app (started and stopped by the build), the models' metadata, the source code
and the committed benchmark outputs. ``build.py`` is the entry point:

    .venv/bin/python -m scripts.report.build
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
