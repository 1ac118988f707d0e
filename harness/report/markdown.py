"""Render a report document as Markdown (GitHub, CI job summaries) or as plain terminal text.

Every text of a document is plain text, and much of it comes from plugins or data (names, class
names, error messages), so Markdown output escapes all of it with :func:`escape_markdown`: an
error message ``![x](http://host/x.png)`` stays text, never an image, a link or HTML.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from harness.report.document import Block, Bullets, Figure, Heading, Paragraph, Table

_INLINE = re.compile(r"[\\`*\[\]<>|~$&#]")
"""Characters that start or end an inline construct: code, emphasis, links and images, HTML,
autolinks, table cells, strikethrough, math (GitHub), entities, headings (a closing ``#``)."""
_UNDERSCORE_AT_EDGE = re.compile(r"(?<![^\W_])_|_(?![^\W_])")
"""An underscore between two letters or digits cannot emphasise (CommonMark), so ``book_cnn``
stays readable; any other underscore is escaped."""
_BLOCK_START = re.compile(r"^(?:[-+](?= |$)|\d{1,9}(?=[.)](?: |$))|[-=]+$)")
"""What would make a line a list item, an ordered list item, a rule or a setext underline."""


def escape_markdown(text: object) -> str:
    """``text`` as Markdown that renders as exactly that text, on one line."""
    line = " ".join(str(text).split())
    line = _INLINE.sub(lambda m: "\\" + m.group(0), line)
    line = _UNDERSCORE_AT_EDGE.sub(r"\\_", line)
    match = _BLOCK_START.match(line)
    if match is None:
        return line
    if match.group(0).isdigit():  # "1. x": escape the dot, "\1." would print the backslash
        return line[: match.end()] + "\\" + line[match.end() :]
    return "\\" + line


Escape = Callable[[object], str]


def _plain(text: object) -> str:
    return " ".join(str(text).split())


def _plain_cell(text: object) -> str:
    return _plain(text).replace("|", "\\|")


def render_table(
    headers: tuple[str, ...],
    rows: tuple[tuple[str, ...], ...],
    escape: Escape = escape_markdown,
) -> str:
    """A pipe table padded to aligned columns, so the raw text is readable too; ``escape``
    makes each cell's text (pipes included) safe."""
    cells = [[escape(h) for h in headers], *([escape(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in cells
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _render(block: Block, escape: Escape, escape_cell: Escape) -> str:
    if isinstance(block, Heading):
        return "#" * block.level + " " + escape(block.text)
    if isinstance(block, Paragraph):
        return escape(block.text)
    if isinstance(block, Bullets):
        return "\n".join(f"- {escape(item)}" for item in block.items)
    if isinstance(block, Table):
        return render_table(block.headers, block.rows, escape_cell)
    if isinstance(block, Figure):
        return f"![{escape(block.plot.title)}]({block.plot.path.as_posix()})"
    raise TypeError(f"not a report block: {block!r}")


def render_markdown(blocks: list[Block]) -> str:
    return "\n\n".join(_render(block, escape_markdown, escape_markdown) for block in blocks) + "\n"


def render_text(blocks: list[Block]) -> str:
    """Terminal text: no heading marks and no escapes; tables stay aligned pipe tables."""
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            text = _plain(block.text)
            parts.append(text + "\n" + ("=" if block.level == 1 else "-") * len(text))
        else:
            parts.append(_render(block, _plain, _plain_cell))
    return "\n\n".join(parts) + "\n"
