"""Render a report document as Markdown (GitHub, CI job summaries) or as plain terminal text."""

from __future__ import annotations

from harness.report.document import Block, Bullets, Figure, Heading, Paragraph, Table


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_table(headers: tuple[str, ...], rows: tuple[tuple[str, ...], ...]) -> str:
    """A pipe table padded to aligned columns, so the raw text is readable too."""
    cells = [[_cell(h) for h in headers], *([_cell(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in cells
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def render_markdown(blocks: list[Block]) -> str:
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append("#" * block.level + " " + block.text)
        elif isinstance(block, Paragraph):
            parts.append(block.text)
        elif isinstance(block, Bullets):
            parts.append("\n".join(f"- {item}" for item in block.items))
        elif isinstance(block, Table):
            parts.append(render_table(block.headers, block.rows))
        elif isinstance(block, Figure):
            parts.append(f"![{block.plot.title}]({block.plot.path.as_posix()})")
    return "\n\n".join(parts) + "\n"


def render_text(blocks: list[Block]) -> str:
    """Terminal text: the Markdown without heading marks; tables stay aligned pipe tables."""
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(block.text + "\n" + ("=" if block.level == 1 else "-") * len(block.text))
        else:
            parts.append(render_markdown([block]).rstrip("\n"))
    return "\n\n".join(parts) + "\n"
