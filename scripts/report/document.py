"""The report as one HTML document: the title page, the chapters in the specification's order,
the table of contents and the list of figures (their page numbers filled in by WeasyPrint's
``target-counter``), laid out by templates/report.css."""

from __future__ import annotations

import html
import json
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from scripts.report import DOCS, ROOT, entities, environment, excerpts, figures
from scripts.report.chapters import (
    Fragment,
    Markdown,
    MissingSource,
    code_block,
    from_first_section,
    plain,
    pygments_css,
    read_source,
    slug,
    split_after_section,
    without_section,
)
from scripts.report.figures import Figures
from scripts.report.live import log
from scripts.report.settings import Settings
from scripts.report.tables import html_table

e = html.escape
REPORT_DOCS = DOCS / "report"
STYLESHEET = Path(__file__).parent / "templates" / "report.css"

# Sections of the documents that make up the caching chapter, by heading.
CACHING_SECTIONS = (
    ("performance_tuning.md", "Cached vs uncached catalog reads"),
    ("performance_tuning.md", "Cached product detail"),
    ("performance_tuning.md", "Cached product list page"),
    ("performance_tuning.md", "Uncached product detail"),
    ("scaling.md", "2.3 The cache, first"),
    ("shipping.md", "The cache"),
)
# The JMeter section of performance_tuning.md, beside its charts in the monitoring chapter.
LOAD_TEST_SECTION = ("performance_tuning.md", "Load tests with JMeter")
CONFIGURATION_FILES = ("nginx.conf", "prometheus.yml", "gunicorn.conf.py", "docker-compose.yml")
README_SECTIONS = ("Two commands",)


@dataclass
class Chapter:
    id: str
    title: str
    number: str = ""
    parts: list[str] = field(default_factory=list)
    sections: list[tuple[str, str]] = field(default_factory=list)  # (text, id) of each h2
    css: str = ""
    # The chapter opens on a landscape page (its heading and first figure); a part closes it.
    landscape_opening: bool = False

    @property
    def label(self) -> str:
        return f"{self.number} {self.title}".strip()


def required_sources() -> list[tuple[Path, str | None]]:
    """Every document (and section) the report is made of: (path, heading or None)."""
    sources: list[tuple[Path, str | None]] = [
        (REPORT_DOCS / f"{name}.md", None)
        for name in (
            "executive_summary",
            "introduction",
            "development",
            "challenges",
            "conclusion",
            "references",
        )
    ]
    sources += [
        (DOCS / name, None)
        for name in (
            "architecture.md",
            "db_optimization.md",
            "load_balancing.md",
            "security.md",
            "observability.md",
        )
    ]
    sources += [(DOCS / name, heading) for name, heading in (*CACHING_SECTIONS, LOAD_TEST_SECTION)]
    sources += [(DOCS / "query_plans.md", None)]
    sources += [(ROOT / "README.md", heading) for heading in README_SECTIONS]
    return sources


def check_sources() -> list[str]:
    """What is missing, as messages (empty when every source is there)."""
    from scripts.report.chapters import section_text

    problems = []
    for path, heading in required_sources():
        try:
            section_text(path, heading) if heading else read_source(path)
        except MissingSource as error:
            problems.append(str(error))
    return problems


class Report:
    def __init__(
        self, settings: Settings, live: dict, build_dir: Path, suite: environment.SuiteSummary
    ) -> None:
        self.settings, self.live, self.build, self.suite = settings, live, build_dir, suite
        self.figures = Figures()
        self.used_ids: set[str] = set()
        self.chapters: list[Chapter] = []
        self.placeholders: list[str] = []
        self.anchors = {
            (DOCS / "architecture.md").resolve(): "ch-project-structure",
            (DOCS / "db_optimization.md").resolve(): "ch-database",
            (DOCS / "load_balancing.md").resolve(): "ch-load-balancing",
            (DOCS / "security.md").resolve(): "ch-security",
            (DOCS / "observability.md").resolve(): "ch-monitoring",
            (DOCS / "query_plans.md").resolve(): "appendix-query-plans",
        }
        for name, chapter_id in (
            ("executive_summary", "ch-executive-summary"),
            ("introduction", "ch-introduction"),
            ("development", "ch-development"),
            ("challenges", "ch-challenges"),
            ("conclusion", "ch-conclusion"),
            ("references", "ch-references"),
        ):
            self.anchors[(REPORT_DOCS / f"{name}.md").resolve()] = chapter_id
        self.markdown = Markdown(self.figures, self.anchors, self.used_ids)

    # -- building blocks ---------------------------------------------------------------------

    def chapter(self, chapter_id: str, title: str, number: str = "", css: str = "") -> Chapter:
        self.used_ids.add(chapter_id)
        chapter = Chapter(chapter_id, title, number, css=css)
        self.chapters.append(chapter)
        return chapter

    def unique_id(self, base: str) -> str:
        candidate, n = base, 2
        while candidate in self.used_ids:
            candidate, n = f"{base}-{n}", n + 1
        self.used_ids.add(candidate)
        return candidate

    def section(self, chapter: Chapter, title: str) -> None:
        section_id = self.unique_id(f"{chapter.id}-{slug(title)}")
        chapter.sections.append((title, section_id))
        chapter.parts.append(f'<h2 id="{section_id}">{e(title)}</h2>\n')

    def add_fragment(self, chapter: Chapter, fragment: Fragment) -> None:
        chapter.parts.append(fragment.html)
        chapter.sections += [(h.text, h.id) for h in fragment.headings if h.level == 2]

    def placeholder(self, chapter: Chapter, error: MissingSource) -> None:
        if not self.settings.draft:
            raise error
        log(f"warning: {error} (draft: a placeholder stands in)")
        self.placeholders.append(str(error))
        chapter.parts.append(f'<p class="placeholder">Draft placeholder: {e(str(error))}.</p>\n')

    def document(self, chapter: Chapter, path: Path, *, subtitle: bool = True) -> None:
        """A whole document as the chapter's text: its "##" become the chapter's sections."""
        try:
            fragment = self.markdown.document(path, shift=0, prefix=chapter.id)
        except MissingSource as error:
            self.placeholder(chapter, error)
            return
        if subtitle:
            title = (
                f": {e(fragment.title)}" if fragment.title and plain(fragment.title) != chapter.title else ""
            )
            source = path.relative_to(ROOT)
            chapter.parts.append(f'<p class="source">From <code>{source}</code>{title}</p>\n')
        self.add_fragment(chapter, fragment)

    def doc_section(self, chapter: Chapter, name: str, heading: str, path: Path | None = None) -> None:
        path = path or DOCS / name
        try:
            fragment = self.markdown.section(path, heading, level=2, prefix=chapter.id)
        except MissingSource as error:
            self.placeholder(chapter, error)
            return
        first_close = fragment.html.find("</h2>") + len("</h2>")
        note = f'<p class="source">From <code>{path.relative_to(ROOT)}</code></p>\n'
        fragment.html = fragment.html[:first_close] + "\n" + note + fragment.html[first_close:]
        self.add_fragment(chapter, fragment)

    def figure(
        self, chapter: Chapter, path: Path, caption: str, *, id: str | None = None, css: str = ""
    ) -> str:
        markup = self.figures.html(path, caption, id=id, css=css)
        chapter.parts.append(markup)
        return markup

    table = staticmethod(html_table)

    # -- the chapters, in the specification's order --------------------------------------------

    def build_chapters(self) -> None:
        self.executive_summary()
        self.introduction()
        self.project_structure()
        self.table_entities()
        self.development_process()
        self.api_endpoints()
        self.database_design()
        self.caching()
        self.load_balancing()
        self.security()
        self.monitoring()
        self.report_chapter("ch-challenges", "Challenges and solutions", "challenges", "11")
        self.report_chapter("ch-conclusion", "Conclusion", "conclusion", "12")
        self.report_chapter("ch-references", "References", "references", "")
        self.appendices()

    def report_chapter(self, chapter_id: str, title: str, name: str, number: str) -> Chapter:
        chapter = self.chapter(chapter_id, title, number)
        self.document(chapter, REPORT_DOCS / f"{name}.md", subtitle=False)
        return chapter

    def executive_summary(self) -> None:
        self.report_chapter(
            "ch-executive-summary", "Executive summary", "executive_summary", ""
        ).css = "front"

    def introduction(self) -> None:
        self.report_chapter("ch-introduction", "Introduction", "introduction", "1")

    def project_structure(self) -> None:
        chapter = self.chapter("ch-project-structure", "Project structure", "2")
        self.section(chapter, "The system at a glance")
        path = figures.architecture_diagram(self.build / "architecture.svg")
        self.figure(
            chapter,
            path,
            "The architecture: the storefront and API clients, nginx, the app instances, the Huey worker, "
            "Redis, the PostgreSQL cluster under Patroni with etcd, the outside services and monitoring "
            "(solid: requests and data; dashed: reads that may go to a standby, scrapes and queries)",
            id="fig-architecture",
            css="diagram",
        )
        self.document(chapter, DOCS / "architecture.md")

    def table_entities(self) -> None:
        chapter = self.chapter("ch-table-entities", "Table entities", "3")
        schema = entities.schema()
        columns = sum(len(t.columns) for t in schema.tables)
        indexes = sum(len(t.indexes) for t in schema.tables)
        chapter.parts.append(
            '<p class="source">Generated from the SQLAlchemy models\' metadata '
            "(<code>ecommerce.models</code>, "
            f"as <code>migrations/env.py</code> loads it): {len(schema.tables)} tables, {columns} columns, "
            f"{indexes} secondary indexes; SQL types as PostgreSQL spells them.</p>\n"
        )
        chapter.landscape_opening = True
        self.section(chapter, "The entity-relationship diagram")
        path = entities.er_diagram(schema.tables, self.build / "er-diagram.svg")
        self.figure(
            chapter,
            path,
            "The entity-relationship diagram, drawn from the models' metadata: primary keys in bold, "
            "* marks NOT NULL, edges run from the foreign key to the key it references, labelled with "
            "the ON DELETE rule (created_at and updated_at, on every table, left out)",
            id=self.markdown.er_figure_id,
            css="er",
        )
        chapter.parts.append("</div>")
        self.section(chapter, "Tables")
        for table in schema.tables:
            chapter.parts.append(entities.table_html(table, self.unique_id(f"table-{slug(table.name)}")))
        self.section(chapter, "Foreign keys")
        chapter.parts.append(entities.foreign_keys_html(schema.tables))
        self.section(chapter, "Relationships")
        chapter.parts.append(entities.relationships_html(schema.relationships))

    def development_process(self) -> None:
        chapter = self.chapter("ch-development", "Development process", "4")
        self.document(chapter, REPORT_DOCS / "development.md", subtitle=False)
        self.section(chapter, "Libraries and tools, as installed")
        packages = environment.package_versions()
        rows = [
            [f"<code>{e(n)}</code>", e(p), e(i) if i == p else f'<span class="warn">{e(i)}</span>']
            for n, p, i in packages
        ]
        chapter.parts.append(
            '<p class="source">Every package pinned in <code>requirements.txt</code>, with the version '
            "installed in the virtualenv that built this report (importlib.metadata).</p>\n"
            + self.table(["Package", "Pinned", "Installed"], rows, css="data compact")
        )
        tools = [[e(t), f"<code>{e(s)}</code>", e(v)] for t, s, v in self.live["tools"]]
        tools += [[e(n), "importlib.metadata", e(v)] for n, v in environment.toolchain_versions()]
        chapter.parts.append(
            '<p class="source">The tools, each asked for its version when the report was built; '
            "the last rows are the report's own toolchain.</p>\n"
            + self.table(["Tool", "Asked with", "Version"], tools, css="data")
        )
        self.section(chapter, "The critical code")
        chapter.parts.append(
            '<p class="source">Taken from the source by name when the report is built (Python\'s '
            "<code>ast</code>), so that they are the code as it is.</p>\n"
        )
        for excerpt, source in excerpts.all_sources():
            trimmed = (
                f"; the first {excerpts.MAX_LINES - 2} of its {source.total_lines} lines"
                if source.trimmed
                else ""
            )
            caption = (
                f"{excerpt.topic}: <code>{e(source.name)}</code> in <code>{e(source.path)}</code>, "
                f"lines {source.first_line}-{source.last_line}{trimmed}"
            )
            chapter.parts.append(
                f'<figure class="listing"><figcaption>{caption}</figcaption>'
                f"{code_block(source.text, 'python')}</figure>\n"
            )

    def api_endpoints(self) -> None:
        chapter = self.chapter("ch-api", "API endpoints", "5")
        spec = self.live["openapi"]
        operations = list(_operations(spec))
        self.section(chapter, "Every endpoint")
        chapter.parts.append(
            f'<p class="source">From the OpenAPI document the running app serves at '
            f"<code>/api/openapi.json</code> ({e(spec.get('info', {}).get('title', ''))} "
            f"{e(spec.get('info', {}).get('version', ''))}, OpenAPI {e(spec.get('openapi', ''))}): "
            f"{len(spec.get('paths', {}))} paths, {len(operations)} operations.</p>\n"
        )
        # Who may call it: as scripts/api_reference.py checked it against the running app, else
        # as the document declares it.
        access = self.live["api_examples"].get("access") or {}
        rows = [
            [
                f'<span class="method">{m.upper()}</span>',
                f"<code>{e(p)}</code>",
                e(access.get(f"{m.upper()} {p}") or _who(op)),
                e(op.get("summary", "")),
            ]
            for p, m, op in operations
        ]
        headers = ["Method", "URL", "Who may call it", "Description"]
        chapter.parts.append(self.table(headers, rows, css="data endpoints", widths=[10, 36, 24, 30]))
        examples = self.live["api_examples"]
        if examples.get("markdown"):
            chapter.parts.append(
                '<p class="source">Captured from the running app by <code>scripts/api_reference.py</code> '
                "while this report was built.</p>\n"
            )
            # Its title, its preamble (how to regenerate it) and its own table of contents give
            # way to the report's.
            text = without_section(from_first_section(examples["markdown"]), "Contents")
            fragment = self.markdown.render(text, DOCS / "api.md", shift=0, prefix="api", drop_title=True)
            self.add_fragment(chapter, fragment)
        else:
            self.section(chapter, "Example requests and responses")
            self.placeholders.append(examples.get("note", "no captured examples"))
            chapter.parts.append(
                f'<p class="placeholder">Draft placeholder: {e(examples.get("note", ""))}. '
                "Below, what the OpenAPI document says of each operation.</p>\n"
            )
            for path, method, operation in operations:
                chapter.parts.append(_operation_html(path, method, operation))

    def database_design(self) -> None:
        chapter = self.chapter("ch-database", "Database design and optimisation", "6")
        self.document(chapter, DOCS / "db_optimization.md")

    def caching(self) -> None:
        chapter = self.chapter("ch-caching", "Caching strategies", "7")
        for name, heading in CACHING_SECTIONS:
            self.doc_section(chapter, name, heading)
        self.section(chapter, "Measured while this report was built")
        bench = self.live["bench"]
        rows = [
            [
                e(name),
                f"{bench[name]['rps']:.0f}",
                f"{bench[name]['p50_ms']:.1f}",
                f"{bench[name]['p99_ms']:.1f}",
                str(bench[name]["requests"]),
                str(bench[name]["non_2xx"]),
            ]
            for name in ("cached", "uncached")
        ]
        chapter.parts.append(
            f'<p class="source">Both instances: gunicorn with {e(str(self.live["workers"]))} gevent '
            f"worker(s) on {e(self.live['backend'])}, {bench['products']} products read at random, a "
            "threaded Python client "
            "on the same machine (so the ratio, not the absolute figures, is what carries over). Cache hits "
            f"counted by the instances' /metrics: {e(json.dumps(bench['cache_hits']))}.</p>\n"
            + self.table(
                ["Instance", "req/s", "p50 ms", "p99 ms", "requests", "non-2xx"],
                rows,
                numeric={1, 2, 3, 4, 5},
            )
        )
        path = figures.cached_vs_uncached_chart(bench, self.build / "cached-vs-uncached.svg")
        self.figure(
            chapter,
            path,
            f"Product detail, cached against uncached (CACHE_TYPE=NullCache), measured while this report was "
            f"built: {bench['threads']} client threads, {bench['rounds']} alternating round(s) of "
            f"{bench['seconds']:g} s, medians; cached / uncached = {bench['ratio']:.2f}x",
            id="fig-cached-vs-uncached",
        )

    def load_balancing(self) -> None:
        chapter = self.chapter("ch-load-balancing", "Load balancing", "8")
        path = DOCS / "load_balancing.md"
        try:
            text = read_source(path)
        except MissingSource as error:
            self.placeholder(chapter, error)
            return
        # The charts of its figures come right after the document's measurements.
        head, tail = split_after_section(text, "Measurements")
        fragment = self.markdown.render(head, path, shift=0, prefix=chapter.id, drop_title=True)
        title = f": {e(fragment.title)}" if fragment.title else ""
        chapter.parts.append(f'<p class="source">From <code>docs/load_balancing.md</code>{title}</p>\n')
        self.add_fragment(chapter, fragment)
        data_path = DOCS / "load_balancing.json"
        if data_path.is_file():
            self.load_balancing_figures(chapter, data_path)
        else:
            log("warning: docs/load_balancing.json does not exist: no load-balancing charts")
        if tail:
            self.add_fragment(
                chapter, self.markdown.render(tail, path, shift=0, prefix=chapter.id, drop_title=False)
            )

    def load_balancing_figures(self, chapter: Chapter, data_path: Path) -> None:
        self.section(chapter, "The measurements, charted")
        data = json.loads(data_path.read_text())
        try:
            charts = load_balancing_charts(data, self.build)
        except (KeyError, TypeError, ValueError) as error:
            log(f"warning: docs/load_balancing.json is not shaped as expected ({error!r}): generic charts")
            charts = []
            for index, (title, unit, groups) in enumerate(load_balancing_groups(data), 1):
                path = figures.grouped_bars_chart(
                    title, groups, unit, self.build / f"load-balancing-{index}.svg"
                )
                charts.append((path, f"{title} (docs/load_balancing.json)"))
        for path, caption in charts:
            self.figure(chapter, path, caption)

    def security(self) -> None:
        chapter = self.chapter("ch-security", "Security measures", "9")
        self.document(chapter, DOCS / "security.md")

    def monitoring(self) -> None:
        chapter = self.chapter("ch-monitoring", "Monitoring and performance", "10")
        self.document(chapter, DOCS / "observability.md")
        self.live_window(chapter)
        self.doc_section(chapter, *LOAD_TEST_SECTION)
        self.load_test_charts(chapter)

    def live_window(self, chapter: Chapter) -> None:
        window = self.live["monitoring"]
        load = window["load"]
        self.section(chapter, "A live window, through the dashboard's queries")
        mix = ", ".join(
            f"{name} {count}" for name, count in sorted(load["operations"].items(), key=lambda i: -i[1])
        )
        statuses = ", ".join(f"{status}: {count}" for status, count in load["statuses"].items())
        chapter.parts.append(
            '<p class="source">While this report was built, Prometheus '
            f"{e(window['prometheus_version'])} scraped "
            f"the app (on {e(self.live['backend'])}) and its worker every {window['scrape_seconds']} s while "
            f"{load['threads']} simulated shoppers ran a mixed load for {window['seconds']:.0f} s "
            f"({load['requests']} requests; operations: {e(mix)}; statuses: {e(statuses)}). Each chart is a "
            "panel of the Grafana dashboard, queried over that window with the panel's own PromQL "
            f"(<code>$instance</code> = all, <code>$__rate_interval</code> = {e(window['rate_interval'])}, "
            f"step {window['step_seconds']} s).</p>\n"
        )
        empty = []
        for index, panel in enumerate(window["panels"], 1):
            if not panel["series"]:
                empty.append(panel["title"])
                continue
            series = [(s["legend"], [tuple(p) for p in s["points"]]) for s in panel["series"]]
            path = figures.time_series_chart(
                panel["title"], panel["unit"], series, self.build / f"prometheus-{index}.svg"
            )
            self.figure(chapter, path, f"{panel['title']}: the dashboard's panel over the live window")
        if empty:
            chapter.parts.append(
                f'<p class="note">No samples in the window for: {e(", ".join(empty))}.</p>\n'
            )
        if window["totals"]:
            rows = [[e(t["title"]), f"{t['value']:.0f}"] for t in window["totals"]]
            chapter.parts.append(
                self.table(
                    ["Stat panel over the window (increase() extrapolates to its edges)", "value"],
                    rows,
                    numeric={1},
                )
            )
        exprs = "\n\n".join(
            f"# {panel['title']} ({panel['dashboard']})\n" + "\n".join(panel["exprs"])
            for panel in window["panels"]
        )
        chapter.parts.append(
            '<figure class="listing">'
            "<figcaption>The PromQL of the charted panels, as in the dashboard</figcaption>"
            f"{code_block(exprs)}</figure>\n"
        )

    def load_test_charts(self, chapter: Chapter) -> None:
        self.section(chapter, "The load tests, charted")
        summary_path, saturation_path = (
            DOCS / "load" / "summary.json",
            DOCS / "load" / "saturation" / "summary.json",
        )
        summary = json.loads(summary_path.read_text())
        path = figures.plan_bars_chart(summary, self.build / "jmeter-plans.svg")
        self.figure(
            chapter,
            path,
            f"make load: throughput and latency of each JMeter plan over its measured window "
            f"({summary['start'][:10]}, docs/load/summary.json)",
        )
        rows = []
        for name, plan in summary["plans"].items():
            total = plan["total"]
            rows.append(
                [e(name), f"{plan['measured_s']:.0f}", str(total["samples"]), f"{total['rps']:.1f}"]
                + [str(total[k]) for k in ("p50", "p95", "p99", "max")]
                + [f"{100 * total['error_rate']:.2f}"]
            )
        chapter.parts.append(
            self.table(
                ["Plan", "s", "samples", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "errors %"],
                rows,
                numeric=set(range(1, 9)),
            )
        )
        saturation = json.loads(saturation_path.read_text())
        path = figures.saturation_chart(saturation, self.build / "jmeter-saturation.svg")
        self.figure(
            chapter,
            path,
            f"make load-saturate: throughput and p99 against the number of active JMeter threads "
            f"({saturation['start'][:10]}, docs/load/saturation/summary.json)",
        )

    def appendices(self) -> None:
        chapter = self.chapter("ch-appendices", "Appendices")
        self.section(chapter, "A. Configuration files")
        for name in CONFIGURATION_FILES:
            language = {"conf": "nginx", "yml": "yaml", "py": "python"}[name.rsplit(".", 1)[-1]]
            chapter.parts.append(
                f"<h3><code>{name}</code></h3>\n" + code_block((ROOT / name).read_text(), language)
            )
        self.section(chapter, "B. Make targets")
        chapter.parts.append(
            '<p class="source">The output of <code>make help</code>.</p>\n' + code_block(_make_help())
        )
        self.section(chapter, "C. Commands")
        for heading in README_SECTIONS:
            try:
                fragment = self.markdown.section(ROOT / "README.md", heading, level=3, prefix="readme")
            except MissingSource as error:
                self.placeholder(chapter, error)
                continue
            chapter.parts.append('<p class="source">From <code>README.md</code></p>\n' + fragment.html)
        chapter.parts.append(
            '<h3>The operator commands</h3>\n<p class="source">The output of <code>flask --help</code> '
            "against the report's app.</p>\n" + code_block(self.live["flask_help"])
        )
        self.section(chapter, "D. Test summary")
        chapter.parts.append(_tests_html(self.suite))
        section_id = "appendix-query-plans"
        self.used_ids.add(section_id)
        chapter.sections.append(("E. Query plans", section_id))
        chapter.parts.append(f'<h2 id="{section_id}">E. Query plans</h2>\n')
        try:
            fragment = self.markdown.document(DOCS / "query_plans.md", shift=1, prefix="plans")
        except MissingSource as error:
            self.placeholder(chapter, error)
            return
        chapter.parts.append('<p class="source">From <code>docs/query_plans.md</code></p>\n' + fragment.html)

    # -- the whole document --------------------------------------------------------------------

    def title_page(self) -> str:
        s = self.settings
        draft = '<p class="draft-mark">Draft</p>' if self.placeholders else ""
        return (
            '<section class="title-page">'
            f'<p class="organisation">{e(s.organisation)}</p>'
            f'<h1 class="title" id="title">{e(s.title)}</h1>'
            '<p class="subtitle">Project report</p>'
            f"{draft}"
            f'<p class="date">{e(s.date)}</p>'
            '<p class="colophon">Built by <code>make report</code> from the documents in <code>docs/</code>, '
            "the models' metadata, the source code, the committed benchmark outputs and a live run of the "
            f"application on {e(self.live['backend'])}.</p>"
            "</section>\n"
        )

    def contents(self) -> str:
        items = []
        for chapter in self.chapters:
            sections = "".join(
                f'<li class="toc-section"><a href="#{sid}">{e(text)}</a></li>'
                for text, sid in chapter.sections
            )
            number = f'<span class="toc-number">{e(chapter.number)}</span>' if chapter.number else ""
            items.append(
                f'<li class="toc-chapter"><a href="#{chapter.id}">{number}{e(chapter.title)}</a>'
                + (f"<ul>{sections}</ul>" if sections else "")
                + "</li>"
            )
        figures_list = "".join(
            f'<li><a href="#{entry.id}">{e(entry.caption)}</a></li>' for entry in self.figures.entries
        )
        return (
            '<section class="contents"><h1 class="chapter front" id="contents">Contents</h1>'
            f'<ul class="toc">{"".join(items)}</ul></section>\n'
            '<section class="contents"><h1 class="chapter front" id="list-of-figures">List of figures</h1>'
            f'<ul class="lof">{figures_list}</ul></section>\n'
        )

    def html(self) -> str:
        self.build_chapters()
        body = []
        for chapter in self.chapters:
            number = f'<span class="chapter-number">{e(chapter.number)}</span> ' if chapter.number else ""
            classes = " ".join(filter(None, ["chapter", chapter.css]))
            body.append(
                '<section class="chapter-body">'
                + ('<div class="landscape">' if chapter.landscape_opening else "")
                + f'<h1 class="{classes}" id="{chapter.id}">{number}{e(chapter.title)}</h1>\n'
                + "".join(chapter.parts)
                + "</section>\n"
            )
        front, rest = body[0], body[1:]  # the executive summary comes before the contents
        css = STYLESHEET.read_text() + "\n" + pygments_css() + "\n.code .err { border: none; }\n"
        return (
            '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f"<title>{e(self.settings.title)}</title>"
            f'<meta name="author" content="{e(self.settings.organisation)}">'
            f'<meta name="dcterms.created" content="{e(self.settings.date)}">'
            f"<style>{css}</style></head><body>"
            f'<p class="running-title">{e(self.settings.title)}</p>'
            + self.title_page()
            + front
            + self.contents()
            + "".join(rest)
            + "</body></html>"
        )


# -- helpers ------------------------------------------------------------------------------------

METHODS = ("get", "post", "put", "patch", "delete", "head", "options")


def _operations(spec: dict):
    for path, item in spec.get("paths", {}).items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def _who(operation: dict) -> str:
    """Who may call an operation, from its security and its documented 403."""
    if not operation.get("security"):
        return "anyone"
    forbidden = operation.get("responses", {}).get("403", {}).get("description", "")
    role = re.search(r"Needs the (\w+) role", forbidden)
    if role:
        return f"{role.group(1)} only"
    shared = re.search(r"\(([^)]* or admin)\)", operation.get("summary", ""))
    if shared:
        return f"logged in: {shared.group(1)}"
    return "logged-in user"


def _schema_name(schema: dict | None) -> str:
    if not schema:
        return ""
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if schema.get("type") == "array":
        return f"array of {_schema_name(schema.get('items'))}"
    return schema.get("type", "")


def _operation_html(path: str, method: str, operation: dict) -> str:
    parts = [
        f'<h3 class="operation"><span class="method">{method.upper()}</span> <code>{e(path)}</code></h3>'
    ]
    parts.append(f"<p>{e(operation.get('summary', ''))} <em>({e(_who(operation))})</em></p>")
    parameters = operation.get("parameters", [])
    if parameters:
        rows = [
            [
                f"<code>{e(p['name'])}</code>",
                e(p.get("in", "")),
                "yes" if p.get("required") else "no",
                e(_schema_name(p.get("schema"))),
                e(p.get("description", "")),
            ]
            for p in parameters
        ]
        parts.append(
            html_table(["Parameter", "In", "Required", "Type", "Description"], rows, css="data compact")
        )
    body = operation.get("requestBody", {}).get("content", {})
    for media_type, content in body.items():
        parts.append(
            f"<p>Request body: <code>{e(media_type)}</code>, {e(_schema_name(content.get('schema')))}</p>"
        )
    responses = []
    for code, response in operation.get("responses", {}).items():
        media = ", ".join(response.get("content", {}).keys())
        schema = next((c.get("schema") for c in response.get("content", {}).values()), None)
        responses.append(
            [f"<code>{e(code)}</code>", e(response.get("description", "")), e(media), e(_schema_name(schema))]
        )
    parts.append(html_table(["Status", "Meaning", "Media type", "Body"], responses, css="data compact"))
    return "\n".join(parts) + "\n"


def _make_help() -> str:
    result = subprocess.run(
        ["make", "-s", "--no-print-directory", "help"], capture_output=True, text=True, cwd=ROOT
    )
    if result.returncode != 0:
        raise RuntimeError(f"make help failed: {result.stderr}")
    return result.stdout


def _tests_html(summary: environment.SuiteSummary) -> str:
    total = summary.total
    if summary.source == "junit":
        intro = (
            f"<p>The last run of <code>make test</code>, read from its JUnit XML "
            f"(<code>run/test-results.xml</code>), on {e(summary.when)}: <strong>{total.tests} tests, "
            f"{total.passed} passed, {total.failed} failed, {total.errors} errors, "
            f"{total.skipped} skipped</strong> "
            f"in {summary.wall_seconds or total.seconds:.0f} s.</p>\n"
        )
        rows = [
            [
                f"<code>{e(name)}</code>",
                str(r.tests),
                str(r.passed),
                str(r.failed),
                str(r.errors),
                str(r.skipped),
                f"{r.seconds:.1f}",
            ]
            for name, r in summary.files.items()
        ]
        rows.append(
            [
                "<strong>total</strong>",
                str(total.tests),
                str(total.passed),
                str(total.failed),
                str(total.errors),
                str(total.skipped),
                f"{total.seconds:.1f}",
            ]
        )
        return intro + html_table(
            ["File", "tests", "passed", "failed", "errors", "skipped", "seconds"],
            rows,
            css="data compact",
            numeric={1, 2, 3, 4, 5, 6},
        )
    note = f" ({e(summary.note)})" if summary.note else ""
    intro = (
        "<p>No results of a test run were found (<code>make test</code> writes them to "
        "<code>run/test-results.xml</code>), so the suite's tests are listed as "
        f"<code>{e(summary.command)}</code> collected them on {e(summary.when)}{note}: "
        f"<strong>{total.tests} tests in {len(summary.files)} files</strong>.</p>\n"
    )
    rows = [[f"<code>{e(name)}</code>", str(r.tests)] for name, r in summary.files.items()]
    rows.append(["<strong>total</strong>", str(total.tests)])
    return intro + html_table(["File", "tests"], rows, css="data compact", numeric={1})


def load_balancing_charts(data: dict, build: Path) -> list[tuple[Path, str]]:
    """The figures of docs/load_balancing.json (benchmarks/load_balancers.py): the balancers' own
    cost, the mixed load, and an instance killed or frozen under load."""
    from scripts.report.figures import BarPanel, bars_chart

    settings, charts = data.get("settings", {}), []
    when = f"{data.get('date', '')[:10]}, docs/load_balancing.json"
    overhead = data["overhead"]
    cases = list(overhead)
    path = bars_chart(
        [
            BarPanel(
                "Throughput", "requests per second", cases, {"req/s": [overhead[c]["rps"] for c in cases]}
            ),
            BarPanel(
                "Latency",
                "milliseconds",
                cases,
                {k: [overhead[c][f"{k}_ms"] for c in cases] for k in ("p50", "p99")},
            ),
        ],
        build / "lb-overhead.svg",
    )
    charts.append(
        (
            path,
            f"The balancers' own cost: one read load straight to an instance and through each balancer "
            f"({settings.get('overhead_connections', '?')} connections, medians of {data.get('rounds', '?')} "
            f"rounds; {when})",
        )
    )
    results = data["results"]
    cases = list(results)
    path = bars_chart(
        [
            BarPanel(
                "Reads", "requests per second", cases, {"req/s": [results[c]["read_rps"] for c in cases]}
            ),
            BarPanel(
                "p99 latency",
                "milliseconds",
                cases,
                {
                    "reads": [results[c]["read_p99_ms"] for c in cases],
                    "checkouts": [results[c]["checkout_p99_ms"] for c in cases],
                },
            ),
        ],
        build / "lb-mixed.svg",
    )
    charts.append(
        (
            path,
            "Mixed load through each balancer: "
            f"{settings.get('read_connections', '?')} read connections beside "
            f"{settings.get('buyers', '?')} buyers checking out ({when})",
        )
    )
    failover = data["failover"]
    cases = list(failover)
    faults = sorted({fault for case in failover.values() for fault in case})
    failed = {
        fault: [
            failover[c].get(fault, {}).get("read_failed", 0)
            + failover[c].get(fault, {}).get("checkout_failed", 0)
            for c in cases
        ]
        for fault in faults
    }
    p99 = {fault: [failover[c].get(fault, {}).get("read_p99_ms", 0) for c in cases] for fault in faults}
    path = bars_chart(
        [
            BarPanel("Failed requests (reads and checkouts)", "requests", cases, failed),
            BarPanel("Read p99 during the fault", "milliseconds (log scale)", cases, p99, log=True),
        ],
        build / "lb-failover.svg",
    )
    charts.append(
        (
            path,
            f"An instance lost under load, per balancer: killed (kill) or frozen (hang) for "
            f"{settings.get('dead_seconds', '?')} s; means of "
            f"{data.get('failover_rounds', '?')} rounds ({when})",
        )
    )
    return charts


# The measures of docs/load_balancing.json worth charting, by the words in their names.
_THROUGHPUT = re.compile(r"(rps|req_?s|throughput|requests_per_second)", re.I)
_LATENCY = re.compile(r"(p50|p90|p95|p99|mean|median|latency)", re.I)


def load_balancing_groups(data) -> list[tuple[str, str, dict[str, dict[str, float]]]]:
    """Charts from docs/load_balancing.json: every object whose members are objects with numeric
    throughput or latency fields gives a chart of each kind (cases by measures)."""
    charts = []

    def walk(node, trail: list[str]) -> None:
        if isinstance(node, dict):
            cases = {k: v for k, v in node.items() if isinstance(v, dict)}
            if len(cases) >= 2:
                for kind, pattern, unit in (
                    ("throughput", _THROUGHPUT, "requests per second"),
                    ("latency", _LATENCY, "milliseconds"),
                ):
                    groups = {
                        case: {
                            m: float(x)
                            for m, x in values.items()
                            if isinstance(x, int | float) and not isinstance(x, bool) and pattern.search(m)
                        }
                        for case, values in cases.items()
                    }
                    groups = {case: values for case, values in groups.items() if values}
                    if len(groups) >= 2:
                        where = " / ".join(trail) or "all cases"
                        charts.append((f"{where}: {kind}", unit, groups))
            for key, value in node.items():
                walk(value, [*trail, str(key)])
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, [*trail, str(index)])

    walk(data, [])
    return charts
