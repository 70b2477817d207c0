"""The chapters' text: Markdown from ``docs/`` rendered to HTML (markdown-it-py, tables on).

Nothing is copied: a chapter is a whole document, or sections of one found by their heading.
On the way the HTML is made fit for a PDF:

- headings are shifted so that the document's ``#`` is the chapter's level (its title is the
  chapter's, or a subtitle under it), each with an id for the table of contents;
- links between documents point to where that document is in the report, or become plain text
  (a PDF has no ``docs/`` folder beside it); web links stay;
- pictures are resolved from the document's folder, and a paragraph that is only a picture
  becomes a numbered figure captioned with its alt text;
- Mermaid blocks: an ``erDiagram`` gives way to the ER diagram drawn from the models, any other
  is shown as its source text;
- fenced code is highlighted by Pygments when it is installed.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from markdown_it import MarkdownIt
from markdown_it.token import Token

from scripts.report import ROOT
from scripts.report.figures import Figures
from scripts.report.tables import colgroup, column_widths

try:  # syntax colouring is optional
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import get_lexer_by_name
    from pygments.util import ClassNotFound
except ImportError:  # pragma: no cover - Pygments is pulled in by rich today
    highlight = None

CODE_CLASS = "code"
# Longer blocks (whole configuration files, query plans) stay plain: colouring them costs
# layout time and adds little.
HIGHLIGHT_MAX_LINES = 80
HTML_COMMENT = re.compile(r"^<!--.*?-->[ \t]*\n?", re.S | re.M)
WEB_LINK = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)


class MissingSource(Exception):
    """A document (or a section of one) the report is built from does not exist."""


def slug(text: str) -> str:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return re.sub(r" ", "-", text)


def plain(text: str) -> str:
    """A heading's Markdown as plain text."""
    return re.sub(r"[`*_]", "", text).strip()


def pygments_css() -> str:
    if highlight is None:
        return ""
    return HtmlFormatter(style="friendly").get_style_defs(f".{CODE_CLASS}")


def code_block(code: str, language: str = "") -> str:
    """A block of code as HTML, highlighted when Pygments knows the language."""
    body = html.escape(code)
    if highlight is not None and language and code.count("\n") <= HIGHLIGHT_MAX_LINES:
        try:
            lexer = get_lexer_by_name(language)
        except ClassNotFound:
            lexer = None
        if lexer is not None:
            body = highlight(code, lexer, HtmlFormatter(nowrap=True))
    return f'<pre class="{CODE_CLASS}"><code>{body}</code></pre>\n'


def read_source(path: Path) -> str:
    if not path.is_file():
        raise MissingSource(f"{path.relative_to(ROOT)} does not exist")
    return path.read_text(encoding="utf-8")


def section_text(path: Path, heading: str) -> str:
    """The lines of the section of ``path`` whose heading reads ``heading`` (or starts with it),
    up to the next heading of the same or a higher level."""
    text = read_source(path)
    tokens = _parser().parse(text)
    lines = text.splitlines(keepends=True)
    wanted, start, level = plain(heading).lower(), None, 0
    for index, token in enumerate(tokens):
        if token.type != "heading_open":
            continue
        this_level = int(token.tag[1])
        if start is None:
            if plain(tokens[index + 1].content).lower().startswith(wanted):
                start, level = token.map[0], this_level
        elif this_level <= level:
            return "".join(lines[start : token.map[0]])
    if start is None:
        raise MissingSource(f'{path.relative_to(ROOT)} has no section "{heading}"')
    return "".join(lines[start:])


def without_section(text: str, heading: str) -> str:
    """``text`` less its section headed ``heading`` (absent: ``text`` unchanged)."""
    tokens = _parser().parse(text)
    lines = text.splitlines(keepends=True)
    wanted, start, level = plain(heading).lower(), None, 0
    for index, token in enumerate(tokens):
        if token.type != "heading_open":
            continue
        this_level = int(token.tag[1])
        if start is None and plain(tokens[index + 1].content).lower() == wanted:
            start, level = token.map[0], this_level
        elif start is not None and this_level <= level:
            return "".join(lines[:start] + lines[token.map[0] :])
    return "".join(lines[:start]) if start is not None else text


def split_after_section(text: str, heading: str) -> tuple[str, str]:
    """``text`` cut at the end of the section whose heading contains ``heading`` (with its
    sub-sections); all of it and nothing when there is no such section."""
    tokens = _parser().parse(text)
    lines = text.splitlines(keepends=True)
    wanted, level = plain(heading).lower(), 0
    for index, token in enumerate(tokens):
        if token.type != "heading_open":
            continue
        this_level = int(token.tag[1])
        if not level and wanted in plain(tokens[index + 1].content).lower():
            level = this_level
        elif level and this_level <= level:
            return "".join(lines[: token.map[0]]), "".join(lines[token.map[0] :])
    return text, ""


def from_first_section(text: str) -> str:
    """``text`` from its first second-level heading on (its title and preamble left out)."""
    for token in _parser().parse(text):
        if token.type == "heading_open" and token.tag == "h2":
            return "".join(text.splitlines(keepends=True)[token.map[0] :])
    return text


def section_level(text: str) -> int:
    first = next(token for token in _parser().parse(text) if token.type == "heading_open")
    return int(first.tag[1])


def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False, "typographer": False}).enable("table")


@dataclass
class Heading:
    level: int
    text: str
    id: str


@dataclass
class Fragment:
    html: str
    title: str | None = None  # the document's own "#" title, when dropped from the body
    headings: list[Heading] = field(default_factory=list)


class Markdown:
    """Renders documents for the report; ``anchors`` maps a document's path to the id of the
    place in the report that holds it (for links between documents)."""

    def __init__(self, figures: Figures, anchors: dict[Path, str], used_ids: set[str]) -> None:
        self.figures, self.anchors, self.used_ids = figures, anchors, used_ids
        self.er_figure_id = "fig-er-diagram"
        self.md = _parser()
        self.md.add_render_rule("fence", self._fence)
        self.md.add_render_rule("code_block", self._fence)
        self.md.add_render_rule("table_open", self._table_open)

    # -- entry points ------------------------------------------------------------------------

    def document(self, path: Path, *, shift: int, prefix: str, drop_title: bool = True) -> Fragment:
        """A whole document; its ``#`` becomes level ``1 + shift``."""
        return self.render(read_source(path), path, shift=shift, prefix=prefix, drop_title=drop_title)

    def section(self, path: Path, heading: str, *, level: int, prefix: str) -> Fragment:
        """One section of a document (with its sub-sections), its heading at ``level``."""
        text = section_text(path, heading)
        return self.render(text, path, shift=level - section_level(text), prefix=prefix, drop_title=False)

    def render(self, text: str, source: Path, *, shift: int, prefix: str, drop_title: bool) -> Fragment:
        text = HTML_COMMENT.sub("", text)  # notes to the documents' editors, not content
        tokens = self.md.parse(text)
        fragment = Fragment("")
        if drop_title and tokens and tokens[0].type == "heading_open" and tokens[0].tag == "h1":
            fragment.title = plain(tokens[1].content)
            del tokens[0:3]
        local_ids = self._heading_ids(tokens, prefix)
        _measure_tables(tokens)
        out: list[Token] = []
        index = 0
        while index < len(tokens):
            token = tokens[index]
            if token.type == "heading_open":
                level = min(6, max(1, int(token.tag[1]) + shift))
                token.tag = tokens[index + 2].tag = f"h{level}"
                token.attrSet("id", local_ids[index])
                fragment.headings.append(Heading(level, plain(tokens[index + 1].content), local_ids[index]))
            elif token.type == "inline" and token.children:
                self._rewrite_inline(token.children, source, local_ids)
            elif token.type == "fence" and token.info.strip().split()[:1] == ["mermaid"]:
                token = self._mermaid(token)
            if self._lone_picture(tokens, index):
                out.append(self._figure_token(tokens[index + 1].children, source))
                index += 3
                continue
            out.append(token)
            index += 1
        fragment.html = self.md.renderer.render(out, self.md.options, {})
        return fragment

    # -- headings and links ------------------------------------------------------------------

    def _heading_ids(self, tokens: list[Token], prefix: str) -> dict[int | str, str]:
        """Token index -> unique id, and the document's own slug -> the same id."""
        ids: dict[int | str, str] = {}
        seen: dict[str, int] = {}
        for index, token in enumerate(tokens):
            if token.type != "heading_open":
                continue
            own = slug(plain(tokens[index + 1].content))
            repeat = seen.get(own, 0)
            seen[own] = repeat + 1
            anchor = f"{own}-{repeat}" if repeat else own  # GitHub's anchor of a repeated heading
            candidate, n = f"{prefix}-{anchor}", 2
            while candidate in self.used_ids:
                candidate, n = f"{prefix}-{anchor}-{n}", n + 1
            self.used_ids.add(candidate)
            ids[index] = candidate
            ids.setdefault(anchor, candidate)
        return ids

    def _rewrite_inline(self, children: list[Token], source: Path, local_ids: dict) -> None:
        index = 0
        while index < len(children):
            child = children[index]
            if child.type == "image":
                child.attrSet("src", self._picture_uri(child.attrGet("src") or "", source))
            if child.type != "link_open":
                index += 1
                continue
            target = self._link_target(child.attrGet("href") or "", source, local_ids)
            if target is not None:
                child.attrSet("href", target)
                index += 1
                continue
            # No place in the report: the link's text stays, as plain text.
            close = _matching_close(children, index)
            inner = children[index + 1 : close]
            href = (child.attrGet("href") or "").split("#")[0]
            if href and _text_of(inner) == href:
                named = _repository_path(href, source)
                inner = [_text_token(named)] if named else inner
            children[index : close + 1] = inner
            index += len(inner)

    def _link_target(self, href: str, source: Path, local_ids: dict) -> str | None:
        if WEB_LINK.match(href):
            return href
        path_part, _, anchor = href.partition("#")
        if not path_part:
            return f"#{local_ids[anchor]}" if anchor in local_ids else None
        target = (source.parent / path_part).resolve()
        if target in self.anchors:
            return f"#{self.anchors[target]}"
        return None

    # -- pictures and blocks -----------------------------------------------------------------

    def _picture_uri(self, src: str, source: Path) -> str:
        if WEB_LINK.match(src):
            return src
        path = (source.parent / src).resolve()
        if not path.is_file():
            raise MissingSource(f"{source.relative_to(ROOT)} shows {src}, which does not exist")
        return path.as_uri()

    @staticmethod
    def _lone_picture(tokens: list[Token], index: int) -> bool:
        """A paragraph that is a picture, alone or with its caption on the next line."""
        if not (
            tokens[index].type == "paragraph_open"
            and index + 2 < len(tokens)
            and tokens[index + 1].type == "inline"
            and tokens[index + 1].children
        ):
            return False
        children = tokens[index + 1].children
        return children[0].type == "image" and (
            len(children) == 1 or children[1].type in {"softbreak", "hardbreak"}
        )

    def _figure_token(self, children: list[Token], source: Path) -> Token:
        image = children[0]
        caption = (
            _text_of(children[2:]).strip() or _text_of(image.children or []) or image.attrGet("alt") or ""
        )
        src = image.attrGet("src") or ""
        if not src.startswith("file:"):
            src = self._picture_uri(src, source)
        block = Token("html_block", "", 0)
        block.content = self.figures.html_uri(src, caption.rstrip("."), css="picture")
        return block

    def _mermaid(self, token: Token) -> Token:
        block = Token("html_block", "", 0)
        if token.content.lstrip().startswith("erDiagram"):
            block.content = (
                '<p class="note">The entity-relationship diagram of this section is drawn from the '
                f'models\' metadata at build time: <a class="figref" href="#{self.er_figure_id}"></a>, '
                "in the chapter Table entities.</p>\n"
            )
        else:
            block.content = '<p class="note">A Mermaid diagram in the source, shown as its text:</p>\n' + (
                code_block(token.content)
            )
        return block

    @staticmethod
    def _table_open(renderer, tokens: list[Token], index: int, options, env) -> str:
        return f'<table class="doc">{colgroup(tokens[index].meta.get("widths", []))}\n'

    @staticmethod
    def _fence(renderer, tokens: list[Token], index: int, options, env) -> str:
        token = tokens[index]
        language = token.info.strip().split()[0] if token.info.strip() else ""
        return code_block(token.content, language)


def _measure_tables(tokens: list[Token]) -> None:
    """Each table's column widths, from its cells' text, kept on its table_open token."""
    table, rows = None, []
    for token in tokens:
        if token.type == "table_open":
            table, rows = token, []
        elif token.type == "tr_open":
            rows.append([])
        elif token.type == "inline" and table is not None and rows:
            rows[-1].append(_text_of(token.children or []) or token.content)
        elif token.type == "table_close" and table is not None:
            table.meta["widths"] = column_widths(rows)
            table = None


def _matching_close(children: list[Token], start: int) -> int:
    depth = 0
    for index in range(start, len(children)):
        if children[index].type == "link_open":
            depth += 1
        elif children[index].type == "link_close":
            depth -= 1
            if depth == 0:
                return index
    return len(children) - 1


def _text_of(tokens: Iterable[Token]) -> str:
    return "".join(
        " " if token.type in {"softbreak", "hardbreak"} else token.content
        for token in tokens
        if token.type in {"text", "code_inline", "softbreak", "hardbreak"}
    )


def _text_token(text: str) -> Token:
    token = Token("code_inline", "code", 0)
    token.content = text
    return token


def _repository_path(href: str, source: Path) -> str | None:
    """``docs/x.md`` for a link written as ``x.md`` in a document of docs/."""
    try:
        return (source.parent / href).resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return None


__all__ = ["Fragment", "Heading", "Markdown", "MissingSource", "code_block", "pygments_css"]
