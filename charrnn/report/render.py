"""The executed report notebook to HTML (nbconvert) and to PDF with pip packages only: the notebook's
text and outputs as pandoc Markdown, then pandoc's typst writer (pypandoc-binary) with our template
(report_template.typ) and the typst compiler (the `typst` package, its own fonts only), with the
float rules checked on the pages (charrnn.report.pdf). The HTML is one file that works offline, its
formulas MathML (charrnn.report.html).

    python -m charrnn.report.render report/assignment4.ipynb    # writes report/assignment4.html and .pdf

The code cells are left out of the PDF, and so are cells tagged "html-only" (text for notebook
users) and "title" (the template prints the title block). Cells tagged "summary" move to just after
the title. The title, authors and course are set in one place, the notebook's metadata; the rendered
HTML's title cell is written from it too. Figures, tables and passages shown with
`charrnn.report.captions` become captioned figures, tables and
framed passages; references to them ("[Figure](#fig-...)") are resolved first.
"""
from __future__ import annotations

import argparse
import base64
import datetime
import json
import re
import sys
import time
from pathlib import Path

import nbformat

from charrnn.report.html import write_html
from charrnn.report.pdf import (TEMPLATE, caption_positions, compile_pdf, figure_size,  # noqa: F401 (used by tests)
                                metadata_args, passage_typst, typst_from_markdown)

REFERENCE = re.compile(r"\[(Figure|Table|Passage)s?\]\(#((?:fig|tbl|psg)-[a-z0-9-]+)\)")
SKIP_TAGS = {"html-only", "title"}


class RenderError(Exception):
    """The notebook cannot be rendered (an error output, a reference to an unknown label)."""


def _outputs(nb):
    for cell in nb.cells:
        if cell.cell_type == "code":
            yield from cell.get("outputs", [])


def numbered_items(nb) -> dict:
    """{label: report metadata} of every figure, table and passage shown in an executed notebook."""
    items = {}
    for out in _outputs(nb):
        meta = out.get("metadata", {}).get("report")
        if meta and meta["kind"] in ("figure", "table", "passage"):
            items[meta["label"]] = meta
    return items


def title_markdown(nb) -> str:
    """The title block of the HTML from the notebook's metadata: title, then authors, course, date."""
    md = nb.metadata
    names = ", ".join(a["name"] if isinstance(a, dict) else a for a in md.get("authors", []))
    below = "  \n".join(x for x in (names, md.get("course"), md.get("date")) if x)
    return f"# {md.get('title', 'Report')}\n\n{below}"


def resolve_references(nb) -> int:
    """Give every "[Figure](#fig-x)" link in the Markdown of `nb` (cells and Markdown outputs) its
    number, in place: "[Figure 3](#fig-x)". Returns the number of links; an unknown label raises."""
    items = numbered_items(nb)
    count = 0

    def fix(m):
        nonlocal count
        if m.group(2) not in items:
            raise RenderError(f"reference to {m.group(2)!r}, which no cell shows")
        count += 1
        return f"[{items[m.group(2)]['name']}](#{m.group(2)})"

    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = REFERENCE.sub(fix, cell.source)
    for out in _outputs(nb):
        data = out.get("data", {})
        if "text/markdown" in data:
            data["text/markdown"] = REFERENCE.sub(fix, data["text/markdown"])
    return count


def notebook_markdown(nb, media: Path) -> str:
    """The text and outputs of an executed notebook as pandoc Markdown; images are written to `media`."""
    media.mkdir(parents=True, exist_ok=True)
    blocks = []
    for i, cell in enumerate(nb.cells):
        if SKIP_TAGS & set(cell.metadata.get("tags", [])):
            continue
        if cell.cell_type == "markdown":
            blocks.append(cell.source)
            continue
        if cell.cell_type != "code":
            continue
        for j, out in enumerate(cell.get("outputs", [])):
            kind = out.get("output_type")
            if kind == "error":
                raise RenderError(f"cell {i} ended with an error: {out.get('ename')}: {out.get('evalue')}")
            if kind == "stream":
                if out.get("name") == "stdout" and out.get("text", "").strip():
                    blocks.append("```\n" + out["text"].rstrip("\n") + "\n```")
                continue
            data, meta = out.get("data", {}), out.get("metadata", {}).get("report", {})
            if meta.get("kind") == "caption":
                continue  # the caption goes into the figure or passage itself
            if meta.get("kind") == "figure":
                path = media / f"{meta['label']}.png"
                path.write_bytes(base64.b64decode(data["image/png"]))
                w, h, _ = figure_size(meta)
                blocks.append(f"![{meta_caption(meta)}]({path.name}){{#{meta['label']} width={w:.3f}in}}")
            elif meta.get("kind") == "table":
                blocks.append(f"{meta['table']}\n\n: {meta_caption(meta)} {{#{meta['label']}}}")
            elif meta.get("kind") == "passage":
                blocks.append(passage_typst(meta))
            elif "text/markdown" in data:
                blocks.append(data["text/markdown"])
            elif "image/png" in data:
                path = media / f"cell{i}_{j}.png"
                path.write_bytes(base64.b64decode(data["image/png"]))
                blocks.append(f"![]({path.name}){{width=100%}}")
    return "\n\n".join(blocks) + "\n"


def meta_caption(meta: dict) -> str:
    return f"**{meta['name']}.** {meta['caption']}"


def to_typst(nb, out_dir: Path, stem: str) -> Path:
    """Write <stem>.md (pandoc Markdown) and <stem>.typ (typst) in out_dir; returns the .typ path."""
    media = out_dir / f"{stem}_files"
    return typst_from_markdown(notebook_markdown(nb, media), out_dir / f"{stem}.md", media, metadata_args(nb))


def summary_first(nb) -> None:
    """Move the cells tagged "summary" (computed at the end of the notebook, once every number is
    known) to just after the title cell, so that the report opens with them."""
    summary = [c for c in nb.cells if "summary" in c.metadata.get("tags", [])]
    if not summary:
        return
    rest = [c for c in nb.cells if "summary" not in c.metadata.get("tags", [])]
    at = next((i + 1 for i, c in enumerate(rest) if "title" in c.metadata.get("tags", [])), 0)
    nb.cells = rest[:at] + summary + rest[at:]


def render(executed: Path, html: bool = True, pdf: bool = True) -> None:
    """Resolve references and date the executed notebook (in place), then write .html and .pdf beside it."""
    executed = Path(executed)
    nb = nbformat.read(executed, as_version=4)
    nb.metadata.setdefault("date", datetime.date.today().strftime("%d %B %Y"))
    for cell in nb.cells:  # the title, authors and course are set in one place: the metadata
        if "title" in cell.metadata.get("tags", []):
            cell.source = title_markdown(nb)
    summary_first(nb)
    resolve_references(nb)
    nbformat.write(nb, executed)
    out_dir, stem = executed.parent, executed.stem
    if html:
        write_html(nb, out_dir / f"{stem}.html")  # one file that works offline (charrnn.report.html)
    if pdf:
        typ = to_typst(nb, out_dir, stem)
        compile_pdf(typ, out_dir / f"{stem}.pdf")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("notebook", help="an executed notebook, e.g. report/assignment4.ipynb")
    ap.add_argument("--no-html", action="store_true")
    ap.add_argument("--no-pdf", action="store_true")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        render(Path(args.notebook), html=not args.no_html, pdf=not args.no_pdf)
    except RenderError as e:
        print(f"render: {e}", file=sys.stderr)
        return 1
    out = Path(args.notebook).with_suffix("")
    print(f"render: {', '.join(str(out) + s for s, skip in (('.html', args.no_html), ('.pdf', args.no_pdf)) if not skip)}"
          f" in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
