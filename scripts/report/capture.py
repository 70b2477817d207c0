"""Everything taken from the running system, in one pass: the live system is started, captured
and stopped (also on error) here. The result is a JSON-able dict, kept in the build folder."""

from __future__ import annotations

import importlib.util
import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from scripts.report import ROOT, environment, loadgen, monitoring
from scripts.report.chapters import MissingSource
from scripts.report.live import LiveSystem, log
from scripts.report.settings import Settings

# Example requests and responses of every endpoint: capture(base_url) -> dict and
# render_markdown(data) -> str (the same module writes docs/api.md).
API_REFERENCE = ROOT / "scripts" / "api_reference.py"


def fetch_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def api_examples(live: LiveSystem, settings: Settings) -> dict:
    """The example requests and responses, as Markdown, from scripts/api_reference.py, and who
    may call each operation as it checked against the running app."""
    if not API_REFERENCE.is_file():
        message = "scripts/api_reference.py does not exist: no captured examples"
        if not settings.draft:
            raise MissingSource(message)
        log(f"warning: {message} (draft: the chapter shows the OpenAPI document alone)")
        return {"markdown": None, "note": message, "access": {}}
    name = "report_api_reference"
    spec = importlib.util.spec_from_file_location(name, API_REFERENCE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    for name in ("capture", "render_markdown"):
        if not callable(getattr(module, name, None)):
            raise RuntimeError(
                f"scripts/api_reference.py has no {name}() (the report calls capture and render_markdown)"
            )
    log("capturing example requests and responses (scripts/api_reference.py)")
    # Its admin is made with ``flask users create-admin`` in the live system's environment.
    data = module.capture(live.app_url, cli_env=live.env)
    access = {
        # "Admin only: a bearer token ..." -> "Admin only"
        f"{op['method'].upper()} {op['path']}": op.get("access", {}).get("text", "").split(":")[0].rstrip(".")
        for op in data.get("operations", [])
    }
    return {"markdown": module.render_markdown(data), "note": "", "access": access}


def capture(settings: Settings) -> dict:
    began = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="report-live-") as folder,
        LiveSystem(settings, Path(folder)) as live,
    ):
        data: dict = {
            "backend": live.backend.description,
            "backend_kind": live.backend.kind,
            "seed_products": settings.seed_products,
            "workers": live.env["WEB_CONCURRENCY"],
            "quick": settings.quick,
        }
        data["openapi"] = fetch_json(f"{live.app_url}/api/openapi.json")
        data["api_examples"] = api_examples(live, settings)
        log(f"cached vs uncached product detail, {settings.bench_seconds:g}s per round")
        data["bench"] = loadgen.cached_vs_uncached(
            live.app_url,
            live.uncached_url,
            seconds=settings.bench_seconds,
            rounds=1 if settings.quick else 3,
        )
        data["monitoring"] = monitoring.capture_window(live, settings.load_seconds)
        data["tools"] = environment.tool_versions(live.backend.database_url)
        data["flask_help"] = live.flask("--help")
    data["capture_seconds"] = time.monotonic() - began
    return data
