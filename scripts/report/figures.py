"""Figures: the numbered list of them, the Graphviz diagrams and the matplotlib charts.

Charts are drawn on matplotlib's Figure (no pyplot: no GUI backend, no global state) and saved
as SVG; diagrams are Graphviz ``dot`` sources rendered to SVG. Each figure is numbered by the
stylesheet (``counter(figure)``), and listed after the table of contents.
"""

from __future__ import annotations

import html
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure

matplotlib.rcParams.update(
    {
        "svg.hashsalt": "report",  # stable ids: the same data gives the same file
        "font.family": "DejaVu Sans",
        "font.size": 8,
        "axes.titlesize": 9,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "legend.fontsize": 7,
        "legend.frameon": False,
    }
)
PALETTE = ["#2b6cb0", "#dd6b20", "#38a169", "#c53030", "#805ad5", "#d69e2e", "#319795", "#b83280"]
WIDTH = 6.4  # inches: the text width of an A4 page with the report's margins
FONT = "DejaVu Sans"


@dataclass
class FigureEntry:
    id: str
    caption: str


@dataclass
class Figures:
    """The figures in the order they appear; ``html`` registers one and returns its markup."""

    entries: list[FigureEntry] = field(default_factory=list)

    def html(self, path: Path, caption: str, *, id: str | None = None, css: str = "") -> str:
        return self.html_uri(path.resolve().as_uri(), caption, id=id, css=css)

    def html_uri(self, uri: str, caption: str, *, id: str | None = None, css: str = "") -> str:
        figure_id = id or f"fig-{len(self.entries) + 1}"
        self.entries.append(FigureEntry(figure_id, caption))
        return (
            f'<figure id="{figure_id}" class="numbered {css}">'
            f'<img src="{html.escape(uri)}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>\n"
        )


def save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="svg", bbox_inches="tight", metadata={"Date": None})
    return path


# -- Graphviz ---------------------------------------------------------------------------------


def dot_binary() -> str:
    found = shutil.which("dot")
    if not found:
        raise RuntimeError("Graphviz's dot is not installed (make system-packages installs graphviz)")
    return found


def render_dot(source: str, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".dot").write_text(source)
    subprocess.run([dot_binary(), "-Tsvg", "-o", str(path)], input=source, text=True, check=True)
    return path


def architecture_diagram(path: Path) -> Path:
    """The deployment as ``make stack`` and docker-compose.yml run it, top to bottom: clients,
    nginx, the app instances, then what they use; monitoring on the side."""

    def node(name: str, label: str, **attributes: str) -> str:
        extra = "".join(f', {key}="{value}"' for key, value in attributes.items())
        return f'  {name} [label="{label}"{extra}];\n'

    store = {"shape": "cylinder", "fillcolor": "#fdf2e9", "color": "#c05621"}
    outside = {"fillcolor": "#f7fafc", "color": "#718096", "style": "rounded,dashed,filled"}
    watch = {"fillcolor": "#f0fff4", "color": "#2f855a"}
    source = (
        "digraph architecture {\n"
        f'  graph [rankdir=TB, fontname="{FONT}", fontsize=11, nodesep=0.35, ranksep=0.45, '
        "newrank=true, compound=true, pad=0.1];\n"
        f'  node [shape=box, style="rounded,filled", fillcolor="#ebf4ff", color="#2c5282", '
        f'fontname="{FONT}", fontsize=10, margin="0.15,0.07"];\n'
        f'  edge [fontname="{FONT}", fontsize=8.5, color="#4a5568", arrowsize=0.7];\n'
        + node("browser", "Browser: the storefront\\n(static HTML, CSS, JS modules)", **outside)
        + node("clients", "Other API clients", **outside)
        + node("nginx", "nginx\\nstorefront and /media/ files,\\nleast_conn, rate limits, TLS")
        + "  subgraph cluster_apps {\n"
        '    label="app instances: gunicorn + gevent workers"; style="rounded"; color="#2c5282"; '
        'fontname="'
        + FONT
        + '"; fontsize=10;\n'
        + "  "
        + node("app1", "app1\\nFlask + flask-smorest,\\nper-worker local cache")
        + "  "
        + node("app2", "app2\\nFlask + flask-smorest,\\nper-worker local cache")
        + "  }\n"
        + node("redis", "Redis\\ncatalog cache, rate limits, job queue,\\nWAL tokens, event pub/sub", **store)
        + node("worker", "Huey worker\\npayments, refunds,\\norder emails, sweeper")
        + "  subgraph cluster_db {\n"
        '    label="PostgreSQL cluster under Patroni"; style="rounded"; color="#c05621"; '
        'fontname="'
        + FONT
        + '"; fontsize=10;\n'
        + "  "
        + node("primary", "primary\\nwrites, current reads", **store)
        + "  "
        + node("replica1", "standby 1\\nstreaming replica", **store)
        + "  "
        + node("replica2", "standby 2\\nstreaming replica", **store)
        + "  "
        + node("etcd", "etcd\\nleader key,\\ncluster state", fillcolor="#fffaf0", color="#c05621")
        + "  }\n"
        + node("gateway", "Payment gateway\\n(sandbox provider)", **outside)
        + node("smtp", "SMTP server\\norder emails", **outside)
        + node("prometheus", "Prometheus\\nscrapes /metrics,\\nalert rules", **watch)
        + node("grafana", "Grafana\\ndashboards", **watch)
        + '  browser -> nginx [label=" HTTPS"];\n'
        "  clients -> nginx;\n"
        '  nginx -> app1 [label=" /api/"];\n'
        "  nginx -> app2;\n"
        '  app1 -> redis [dir=both, label=" cache, limits, jobs"];\n'
        "  app2 -> redis [dir=both];\n"
        '  app1 -> primary [label=" writes", lhead=cluster_db];\n'
        '  app2 -> replica2 [label=" stale-tolerant reads", style=dashed];\n'
        '  redis -> worker [label=" jobs"];\n'
        '  worker -> primary [label=" writes"];\n'
        '  worker -> gateway [label=" charge, refund"];\n'
        '  worker -> smtp [label=" emails"];\n'
        '  primary -> replica1 [label=" WAL"];\n'
        '  primary -> replica2 [label=" WAL"];\n'
        "  primary -> etcd [dir=none, style=dotted];\n"
        '  prometheus -> app2 [label=" scrape", style=dashed, lhead=cluster_apps];\n'
        '  prometheus -> worker [label=" scrape", style=dashed];\n'
        '  grafana -> prometheus [label=" PromQL", style=dashed];\n'
        "  { rank=same; browser; clients; grafana; }\n"
        "  { rank=same; nginx; prometheus; }\n"
        "  { rank=same; redis; }\n"
        "  { rank=same; gateway; smtp; primary; }\n"
        "}\n"
    )
    return render_dot(source, path)


# -- charts -----------------------------------------------------------------------------------


def _bar_labels(axes, bars, fmt: str) -> None:
    for bar in bars:
        height = bar.get_height()
        axes.annotate(
            format(height, fmt),
            (bar.get_x() + bar.get_width() / 2, height),
            ha="center",
            va="bottom",
            fontsize=7,
            xytext=(0, 2),
            textcoords="offset points",
        )


def cached_vs_uncached_chart(result: dict, path: Path) -> Path:
    figure = Figure(figsize=(WIDTH, 2.6))
    throughput, latency = figure.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.4]})
    names = ["cached", "uncached"]
    bars = throughput.bar(names, [result[n]["rps"] for n in names], color=PALETTE[:2], width=0.55)
    _bar_labels(throughput, bars, ".0f")
    throughput.set_title(f"Throughput (cached / uncached = {result['ratio']:.2f}x)")
    throughput.set_ylabel("requests per second")
    positions = range(2)
    for offset, (key, label) in enumerate((("p50_ms", "p50"), ("p99_ms", "p99"))):
        bars = latency.bar(
            [p + (offset - 0.5) * 0.35 for p in positions],
            [result[n][key] for n in names],
            width=0.35,
            label=label,
            color=PALETTE[2 + offset],
        )
        _bar_labels(latency, bars, ".1f")
    latency.set_xticks(list(positions), names)
    latency.set_title("Latency")
    latency.set_ylabel("milliseconds")
    latency.legend()
    figure.tight_layout()
    return save(figure, path)


def time_series_chart(title: str, unit: str, series: list[tuple[str, list[tuple[float, float]]]], path: Path):
    """One dashboard panel: ``series`` are (legend, [(seconds since the start, value)]). At most
    eight lines are drawn, the highest on average; the legend then says so."""
    scale, label = {
        "s": (1000.0, "milliseconds"),
        "percentunit": (100.0, "percent"),
        "reqps": (1.0, "requests per second"),
        "ops": (1.0, "per second"),
        "short": (1.0, ""),
    }.get(unit, (1.0, unit or ""))
    ranked = sorted(series, key=lambda item: -sum(v for _, v in item[1]) / max(1, len(item[1])))
    shown = ranked[: len(PALETTE)]
    figure = Figure(figsize=(WIDTH, 2.4))
    axes = figure.subplots()
    for index, (legend, points) in enumerate(shown):
        xs = [x for x, _ in points]
        ys = [y * scale for _, y in points]
        axes.plot(
            xs, ys, label=legend or "value", color=PALETTE[index], linewidth=1.3, marker=".", markersize=2
        )
    axes.set_title(title)
    axes.set_xlabel("seconds since the load started")
    axes.set_ylabel(label)
    axes.set_ylim(bottom=0)
    if len(series) > 1 or (series and series[0][0]):
        legend_title = f"the {len(shown)} highest of {len(series)}" if len(series) > len(shown) else None
        axes.legend(
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            borderaxespad=0,
            title=legend_title,
            title_fontsize=7,
        )
    figure.tight_layout()
    return save(figure, path)


def plan_bars_chart(summary: dict, path: Path) -> Path:
    """``make load``'s summary.json: throughput and p50/p95/p99 of each plan's measured window."""
    plans = summary["plans"]
    names = list(plans)
    figure = Figure(figsize=(WIDTH, 2.6))
    throughput, latency = figure.subplots(1, 2)
    bars = throughput.bar(names, [plans[n]["total"]["rps"] for n in names], color=PALETTE[0], width=0.55)
    _bar_labels(throughput, bars, ".1f")
    throughput.set_title("Throughput per plan")
    throughput.set_ylabel("requests per second")
    width = 0.26
    for offset, key in enumerate(("p50", "p95", "p99")):
        bars = latency.bar(
            [i + (offset - 1) * width for i in range(len(names))],
            [plans[n]["total"][key] for n in names],
            width=width,
            label=key,
            color=PALETTE[1 + offset],
        )
        _bar_labels(latency, bars, "d")
    latency.set_xticks(range(len(names)), names)
    latency.set_title("Latency per plan")
    latency.set_ylabel("milliseconds")
    latency.set_ylim(0, max(plans[n]["total"]["p99"] for n in names) * 1.3)
    latency.legend(loc="upper left", ncol=3)
    figure.tight_layout()
    return save(figure, path)


def saturation_chart(summary: dict, path: Path) -> Path:
    """``make load-saturate``: throughput and p99 against the active threads, per plan."""
    figure = Figure(figsize=(WIDTH, 2.6))
    throughput, latency = figure.subplots(1, 2)
    for index, (name, plan) in enumerate(summary["plans"].items()):
        levels = plan.get("concurrency") or []
        xs = [level["threads_mean"] for level in levels]
        color = PALETTE[index % len(PALETTE)]
        throughput.plot(
            xs, [level["rps"] for level in levels], marker="o", markersize=3, label=name, color=color
        )
        latency.plot(
            xs, [level["p99"] for level in levels], marker="o", markersize=3, label=name, color=color
        )
    throughput.set_title("Throughput against concurrency")
    throughput.set_xlabel("active threads")
    throughput.set_ylabel("requests per second")
    latency.set_title("p99 latency against concurrency")
    latency.set_xlabel("active threads")
    latency.set_ylabel("milliseconds")
    for axes in (throughput, latency):
        axes.set_ylim(bottom=0)
        axes.legend()
    figure.tight_layout()
    return save(figure, path)


@dataclass
class BarPanel:
    title: str
    unit: str
    cases: list[str]  # along the x axis
    series: dict[str, list[float]]  # one bar per series and case
    log: bool = False


def bars_chart(panels: list[BarPanel], path: Path, height: float = 2.6) -> Path:
    """Side by side panels of grouped bars."""
    figure = Figure(figsize=(WIDTH, height))
    axes_list = figure.subplots(1, len(panels), squeeze=False)[0]
    for axes, panel in zip(axes_list, panels, strict=True):
        count = max(1, len(panel.series))
        width = 0.8 / count
        for offset, (name, values) in enumerate(panel.series.items()):
            positions = [i + (offset - (count - 1) / 2) * width for i in range(len(panel.cases))]
            axes.bar(positions, values, width=width, label=name, color=PALETTE[offset % len(PALETTE)])
        axes.set_xticks(range(len(panel.cases)), [c.replace(" ", "\n") for c in panel.cases], fontsize=6.2)
        axes.set_title(panel.title)
        axes.set_ylabel(panel.unit)
        highest = max((v for values in panel.series.values() for v in values), default=1) or 1
        if panel.log:
            axes.set_yscale("log")
            axes.set_ylim(top=highest * 4)  # room for the legend above the bars
        else:
            axes.set_ylim(0, highest * 1.3)
        if len(panel.series) > 1:
            axes.legend(loc="upper left", ncol=len(panel.series))
    figure.tight_layout()
    return save(figure, path)


def grouped_bars_chart(title: str, groups: dict[str, dict[str, float]], unit: str, path: Path) -> Path:
    """Bars of several measures (inner keys) for several cases (outer keys)."""
    cases = list(groups)
    measures = sorted({measure for values in groups.values() for measure in values})
    series = {m: [groups[case].get(m, 0.0) for case in cases] for m in measures}
    return bars_chart([BarPanel(title, unit, cases, series)], path)
