"""One page, two renderings: ``report.md`` (plain text, images beside it) and ``report.html``
(self-contained: styles inline, images embedded as base64, so the file can be mailed or opened
from anywhere; links to the CSV, LaTeX and SVG files beside it keep working next to them).

A page is a list of blocks built once by ``reports.page``; the renderers know nothing about
studies, and no Markdown or template library is needed.
"""
from __future__ import annotations

import base64
import html
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union


@dataclass(frozen=True)
class Link:
    text: str
    href: str  # relative to the page's folder


@dataclass(frozen=True)
class Strong:
    text: str


@dataclass(frozen=True)
class Code:
    text: str


@dataclass(frozen=True)
class Badge:
    """A short status word (a verdict) that HTML colours by ``kind``."""

    text: str
    kind: str


Inline = Union[str, Link, Strong, Code, Badge]
Parts = Sequence[Inline]


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    parts: Parts


@dataclass(frozen=True)
class Notice:
    """A boxed line: ``kind`` "warning" (incomplete study) or "ok"."""

    parts: Parts
    kind: str


@dataclass(frozen=True)
class Bullets:
    items: Sequence[Parts]


@dataclass(frozen=True)
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[Inline]]


@dataclass(frozen=True)
class Figure:
    """An image with a short ``title`` (its alternative text) and the ``caption`` under it."""

    png: Path
    title: str
    caption: str
    svg: Path | None = None


Block = Union[Heading, Paragraph, Notice, Bullets, Table, Figure]
_NUMERIC = re.compile(r"^[\s\d.,+\-−—–/%\[\]]*$")


# -- Markdown -------------------------------------------------------------------------------------
def markdown(blocks: Sequence[Block], folder: Path) -> str:
    """GitHub-flavoured Markdown; image and file paths relative to ``folder`` (the page's)."""
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"{'#' * block.level} {_md_text(block.text)}")
        elif isinstance(block, Paragraph):
            out.append(_md_parts(block.parts))
        elif isinstance(block, Notice):
            out.append(f"> **{_md_parts(block.parts)}**")
        elif isinstance(block, Bullets):
            out.append("\n".join(f"- {_md_parts(item)}" for item in block.items))
        elif isinstance(block, Table):
            right = _numeric_columns(block)
            lines = ["| " + " | ".join(_md_text(h) for h in block.header) + " |",
                     "|" + "|".join("---:" if r else "---" for r in right) + "|"]
            lines += ["| " + " | ".join(_md_inline(c) for c in row) + " |" for row in block.rows]
            out.append("\n".join(lines))
        elif isinstance(block, Figure):
            svg = f" ([SVG]({relative(block.svg, folder)}))" if block.svg else ""
            out.append(f"![{_md_text(block.title)}]({relative(block.png, folder)})\n\n"
                       f"*{_md_text(block.caption)}*{svg}")
    return "\n\n".join(out) + "\n"


def _md_text(text: str) -> str:
    """Escape what Markdown would act on: backslash, backtick, *, |, an HTML-looking <, and _
    unless inside a word (h(P_t), fashion_mnist read as they are)."""
    text = re.sub(r"([\\`*|])", r"\\\1", str(text))
    text = re.sub(r"<(?=[A-Za-z/!?])", r"\\<", text)
    return re.sub(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])", r"\\_", text)


def _md_inline(part: Inline) -> str:
    if isinstance(part, Link):
        return f"[{_md_text(part.text)}]({part.href})"
    if isinstance(part, Strong):
        return f"**{_md_text(part.text)}**"
    if isinstance(part, Code):
        return f"`{part.text.replace('`', '')}`"
    if isinstance(part, Badge):
        return _md_text(part.text)
    return _md_text(part)


def _md_parts(parts: Parts) -> str:
    return "".join(_md_inline(p) for p in parts)


# -- HTML -----------------------------------------------------------------------------------------
_CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d1d1f;
       max-width: 1180px; margin: 2em auto; padding: 0 1.5em; }
h1 { font-size: 1.7em; margin-bottom: .2em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ddd; }
code { font: .9em ui-monospace, SFMono-Regular, Menlo, monospace; background: #f3f3f3; padding: 0 .25em; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: .8em 0; font-size: .92em; }
th, td { border-bottom: 1px solid #e2e2e2; padding: .35em .6em; text-align: left; vertical-align: top; }
th { background: #f6f6f6; white-space: nowrap; } tr:nth-child(even) td { background: #fbfbfb; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.notice { padding: .6em 1em; border-radius: 6px; margin: 1em 0; font-weight: 600; }
.notice.warning { background: #fff4d6; border: 1px solid #e7b416; }
.notice.ok { background: #e6f4ea; border: 1px solid #5bb974; }
.badge { display: inline-block; padding: 0 .5em; border-radius: 9px; font-size: .85em; white-space: nowrap; }
.badge.matches { background: #d7f0dd; color: #16612d; } .badge.collapsed { background: #dbe8fb; color: #1a4d99; }
.badge.differs { background: #fde0d9; color: #9c2a12; } .badge.other { background: #eee; color: #555; }
.badge.unresolved { background: #fff1cc; color: #7a5600; }
figure { margin: 1.2em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #444; font-size: .92em; }
"""


def to_html(blocks: Sequence[Block], title: str, folder: Path) -> str:
    """A complete HTML5 page; images are read now and embedded, file links are relative to
    ``folder`` (the page's)."""
    body: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{html.escape(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            body.append(f"<p>{_html_parts(block.parts)}</p>")
        elif isinstance(block, Notice):
            body.append(f'<div class="notice {html.escape(block.kind)}">{_html_parts(block.parts)}</div>')
        elif isinstance(block, Bullets):
            body.append("<ul>" + "".join(f"<li>{_html_parts(item)}</li>" for item in block.items) + "</ul>")
        elif isinstance(block, Table):
            right = _numeric_columns(block)
            head = "".join(f"<th>{html.escape(h)}</th>" for h in block.header)
            head = f"<thead><tr>{head}</tr></thead>" if any(block.header) else ""  # a key-value table has none
            rows = "".join("<tr>" + "".join(f'<td{" class=num" if r else ""}>{_html_inline(c)}</td>'
                                            for c, r in zip(row, right)) + "</tr>" for row in block.rows)
            body.append(f'<div class="scroll"><table>{head}<tbody>{rows}</tbody></table></div>')
        elif isinstance(block, Figure):
            data = base64.b64encode(block.png.read_bytes()).decode("ascii")
            svg = f' (<a href="{html.escape(relative(block.svg, folder))}">SVG</a>)' if block.svg else ""
            body.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(block.title)}">'
                        f"<figcaption>{html.escape(block.caption)}{svg}</figcaption></figure>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def _html_inline(part: Inline) -> str:
    if isinstance(part, Link):
        return f'<a href="{html.escape(part.href)}">{html.escape(part.text)}</a>'
    if isinstance(part, Strong):
        return f"<strong>{html.escape(part.text)}</strong>"
    if isinstance(part, Code):
        return f"<code>{html.escape(part.text)}</code>"
    if isinstance(part, Badge):
        return f'<span class="badge {html.escape(part.kind)}">{html.escape(part.text)}</span>'
    return html.escape(str(part))


def _html_parts(parts: Parts) -> str:
    return "".join(_html_inline(p) for p in parts)


# -- shared ---------------------------------------------------------------------------------------
def _numeric_columns(table: Table) -> list[bool]:
    """Right-align a column whose every non-empty cell is a number, interval or count."""
    columns = list(zip(*table.rows)) if table.rows else [() for _ in table.header]
    return [any(isinstance(c, str) and c for c in col)
            and all(isinstance(c, str) and _NUMERIC.match(c) for c in col) for col in columns]


def relative(path: Path, folder: Path) -> str:
    """A link from a page in ``folder`` to ``path`` ("../sacred/<id>" from a report folder)."""
    return Path(os.path.relpath(Path(path).absolute(), Path(folder).absolute())).as_posix()
