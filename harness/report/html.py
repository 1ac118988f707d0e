"""Render the report document as one self-contained HTML file: plots embedded as data URIs.

No external stylesheet, script or image: the file can be mailed, archived as a CI artifact and
opened offline.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from harness.report.document import Block, Bullets, Figure, Heading, Paragraph, Table

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; padding: 0 1em; max-width: 75em;
  color: #222; overflow-wrap: break-word; }
.table { overflow-x: auto; margin: 0.5em 0 1em; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; }
td:nth-child(-n+4) { text-align: left; }
img { max-width: 100%; display: block; margin: 1em 0; }
@media (max-width: 60em) { table { font-size: 0.8em; } th, td { padding: 0.2em 0.35em; } }
"""


def _table(block: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in block.headers)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
        for row in block.rows
    )
    # A table wider than a narrow window scrolls inside its box; the page itself never does.
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
    return f'<div class="table">{table}</div>'


def _figure(block: Figure, run_dir: Path) -> str:
    data = base64.b64encode((run_dir / block.plot.path).read_bytes()).decode("ascii")
    title = html.escape(block.plot.title)
    image = f'<img alt="{title}" src="data:image/png;base64,{data}">'
    return f"<figure>{image}<figcaption>{title}</figcaption></figure>"


def render_html(blocks: list[Block], run_dir: Path) -> str:
    """``run_dir`` is where the plots' PNG files are read from to be embedded."""
    title = next((b.text for b in blocks if isinstance(b, Heading)), "Benchmark report")
    body = []
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{html.escape(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            body.append(f"<p>{html.escape(block.text)}</p>")
        elif isinstance(block, Bullets):
            items = "".join(f"<li>{html.escape(item)}</li>" for item in block.items)
            body.append(f"<ul>{items}</ul>")
        elif isinstance(block, Table):
            body.append(_table(block))
        elif isinstance(block, Figure):
            body.append(_figure(block, run_dir))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
