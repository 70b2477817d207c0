"""The build's settings, read from the environment once (``make report`` passes them through)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from scripts.report import DOCS, ROOT

DEFAULT_TITLE = "A high-load e-commerce platform on Flask"
DEFAULT_ORGANISATION = "The E-commerce API project"


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _today() -> str:
    today = date.today()
    return f"{today.day} {today:%B %Y}"


@dataclass(frozen=True)
class Settings:
    title: str
    organisation: str
    date: str
    out: Path
    build_dir: Path
    # A short live window and benchmark (the test); the committed PDF is built without it.
    quick: bool
    # Missing chapter sources become visible placeholders instead of failing the build.
    draft: bool
    database_url: str
    redis_url: str
    seed_products: int
    load_seconds: int
    bench_seconds: float

    @classmethod
    def from_env(cls) -> Settings:
        quick = _flag("REPORT_QUICK")
        out = Path(os.environ.get("REPORT_OUT") or DOCS / "report.pdf")
        return cls(
            title=os.environ.get("REPORT_TITLE") or DEFAULT_TITLE,
            organisation=os.environ.get("REPORT_ORGANISATION") or DEFAULT_ORGANISATION,
            date=os.environ.get("REPORT_DATE") or _today(),
            out=out if out.is_absolute() else ROOT / out,
            build_dir=Path(os.environ.get("REPORT_BUILD_DIR") or ROOT / "run" / "report"),
            quick=quick,
            draft=_flag("REPORT_DRAFT"),
            database_url=os.environ.get(
                "REPORT_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/ecommerce_report"
            ),
            redis_url=os.environ.get("REPORT_REDIS_URL", "redis://127.0.0.1:6379/4"),
            seed_products=int(os.environ.get("REPORT_SEED_PRODUCTS", 300)),
            load_seconds=int(os.environ.get("REPORT_LOAD_SECONDS", 10 if quick else 45)),
            bench_seconds=float(os.environ.get("REPORT_BENCH_SECONDS", 2 if quick else 5)),
        )
