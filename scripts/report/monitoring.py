"""The monitoring window: Prometheus scraping the report's app every second while a mixed load
runs, then queried with the very PromQL of the Grafana dashboard (grafana/dashboards/*.json).

Prometheus is Debian's (scripts/system_packages.sh), run as scripts/stack.sh runs it: a
generated configuration in the spirit of prometheus.yml, a temporary storage folder, 127.0.0.1
only, on a free port in 9290-9299; it is one of the live system's processes, stopped with them.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from scripts.report import ROOT
from scripts.report.live import HOST, PROMETHEUS_PORTS, LiveSystem, free_port, log, wait_for_url
from scripts.report.loadgen import mixed_load

DASHBOARDS = ROOT / "grafana" / "dashboards"
SCRAPE_SECONDS = 1
# Grafana's $__rate_interval: max(4 x the scrape interval, step + scrape interval).
RATE_INTERVAL_SECONDS = 4 * SCRAPE_SECONDS
RATE_INTERVAL = f"{RATE_INTERVAL_SECONDS}s"
STEP_SECONDS = 1

# The dashboard's panels charted in the report, by title (time series), and the stat panels
# given as the window's totals.
CHARTED = (
    "Request rate by endpoint",
    "Request rate by status",
    "Latency p50 / p95 / p99 (all endpoints)",
    "Latency p99 by endpoint",
    "Error rate (5xx share of requests)",
    "Cache hit ratio",
    "Database connections",
    "Jobs by task and event",
    "Payments by status per minute",
)


@dataclass
class Target:
    expr: str  # as the dashboard has it
    legend: str


@dataclass
class Panel:
    title: str
    kind: str
    unit: str
    dashboard: str
    targets: list[Target] = field(default_factory=list)


def dashboard_panels() -> dict[str, Panel]:
    panels: dict[str, Panel] = {}
    for path in sorted(DASHBOARDS.glob("*.json")):
        document = json.loads(path.read_text())
        stack = list(document.get("panels", []))
        while stack:
            panel = stack.pop(0)
            stack.extend(panel.get("panels", []))
            targets = [
                Target(t["expr"], t.get("legendFormat", ""))
                for t in panel.get("targets", [])
                if t.get("expr")
            ]
            if targets:
                unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
                panels[panel["title"]] = Panel(
                    panel["title"], panel.get("type", ""), unit, str(path.relative_to(ROOT)), targets
                )
    return panels


def substitute(expr: str, range_seconds: int) -> str:
    """The dashboard's variables, as Grafana would expand them for this window: every instance."""
    expr = re.sub(r"\$\{?instance\}?", ".*", expr)
    expr = re.sub(r"\$\{?__rate_interval\}?", RATE_INTERVAL, expr)
    return re.sub(r"\$\{?__range\}?", f"{range_seconds}s", expr)


def legend_of(template: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template).strip()


def configuration(app_target: str, worker_target: str) -> str:
    """prometheus.yml's jobs, for the report's instance and worker, scraped every second."""
    return (
        "global:\n"
        f"  scrape_interval: {SCRAPE_SECONDS}s\n"
        "  scrape_timeout: 900ms\n"
        f"  evaluation_interval: {SCRAPE_SECONDS}s\n"
        "scrape_configs:\n"
        "  - job_name: ecommerce-api\n"
        "    metrics_path: /metrics\n"
        "    static_configs:\n"
        f'      - {{targets: ["{app_target}"], labels: {{instance_name: report-app}}}}\n'
        "  - job_name: ecommerce-worker\n"
        "    metrics_path: /metrics\n"
        "    static_configs:\n"
        f'      - {{targets: ["{worker_target}"], labels: {{instance_name: worker}}}}\n'
    )


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def _get(self, path: str, **params: str) -> dict:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=30) as response:
            body = json.load(response)
        if body.get("status") != "success":
            raise RuntimeError(f"Prometheus {path}: {body}")
        return body["data"]

    def query(self, expr: str, at: float) -> list[dict]:
        return self._get("/api/v1/query", query=expr, time=f"{at:.3f}")["result"]

    def query_range(self, expr: str, start: float, end: float, step: int) -> list[dict]:
        data = self._get(
            "/api/v1/query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}", step=str(step)
        )
        return data["result"]

    def version(self) -> str:
        try:
            return self._get("/api/v1/status/buildinfo")["version"]
        except (OSError, RuntimeError, KeyError):
            return "unknown"


def start_prometheus(live: LiveSystem) -> Prometheus:
    binary = shutil.which("prometheus") or "/usr/bin/prometheus"
    port = free_port(PROMETHEUS_PORTS, live.ports)
    folder = live.folder / "prometheus"
    (folder / "data").mkdir(parents=True, exist_ok=True)
    config = folder / "prometheus.yml"
    app_port = urlsplit(live.app_url).port
    config.write_text(configuration(f"{HOST}:{app_port}", f"{HOST}:{live.worker_port}"))
    process = live.spawn(
        "prometheus",
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={folder / 'data'}",
            "--storage.tsdb.retention.time=1d",
            f"--web.listen-address={HOST}:{port}",
        ],
    )
    url = f"http://{HOST}:{port}"
    wait_for_url(f"{url}/-/ready", 60, process)
    return Prometheus(url)


def _wait_for_targets(prometheus: Prometheus, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        up = prometheus.query('sum(up{job=~"ecommerce-.*"})', time.time())
        if up and float(up[0]["value"][1]) >= 2:
            return
        time.sleep(0.5)
    raise RuntimeError("Prometheus does not scrape the report's app and worker")


def capture_window(live: LiveSystem, seconds: int) -> dict:
    """Start Prometheus, run the mixed load for ``seconds``, and query every charted panel."""
    prometheus = start_prometheus(live)
    _wait_for_targets(prometheus)
    time.sleep(3)  # a few scrapes before the load: the rates start from a known zero
    log(f"mixed load for {seconds}s against {live.app_url}")
    start = time.time()
    load = mixed_load(live.app_url, seconds=seconds)
    end = time.time()
    time.sleep(RATE_INTERVAL_SECONDS + 1)  # the rate windows reach past the end
    first, last = start - 2, time.time()
    window = int(round(end - start))
    panels = dashboard_panels()
    missing = [title for title in CHARTED if title not in panels]
    if missing:
        raise RuntimeError(f"the Grafana dashboards have no panel titled: {', '.join(missing)}")
    charted = []
    for title in CHARTED:
        panel = panels[title]
        series = []
        for target in panel.targets:
            sent = substitute(target.expr, window)
            for result in prometheus.query_range(sent, first, last, STEP_SECONDS):
                points = [
                    (float(t) - start, float(v))
                    for t, v in result["values"]
                    if v not in ("NaN", "+Inf", "-Inf")
                ]
                if points:
                    series.append({"legend": legend_of(target.legend, result["metric"]), "points": points})
        charted.append(
            {
                "title": title,
                "unit": panel.unit,
                "dashboard": panel.dashboard,
                "exprs": [t.expr for t in panel.targets],
                "series": series,
            }
        )
    # The stat panels over the whole window: $__range from the start of the load to the last scrape.
    totals, covered = [], int(math.ceil(last - start)) + 1
    for panel in panels.values():
        if panel.kind == "stat":
            for target in panel.targets:
                result = prometheus.query(substitute(target.expr, covered), last)
                value = float(result[0]["value"][1]) if result else 0.0
                totals.append({"title": panel.title, "expr": target.expr, "value": value})
    return {
        "prometheus_version": prometheus.version(),
        "scrape_seconds": SCRAPE_SECONDS,
        "rate_interval": RATE_INTERVAL,
        "step_seconds": STEP_SECONDS,
        "start": start,
        "end": end,
        "seconds": end - start,
        "load": load,
        "panels": charted,
        "totals": totals,
    }
