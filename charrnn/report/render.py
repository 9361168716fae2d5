"""The executed report notebook to HTML (nbconvert) and to PDF with pip packages only: the notebook's
text and outputs as pandoc Markdown, pandoc's typst writer (pypandoc-binary) with our template
(report_template.typ), and the typst compiler (the `typst` package, its own fonts only). The HTML is
one file that works offline, its formulas MathML (charrnn.report.html).

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

TEMPLATE = Path(__file__).with_name("report_template.typ")
TEXT_WIDTH_IN = 16.4 / 2.54  # the template's text width
TEXT_HEIGHT_IN = (29.7 - 2.2 - 2.6) / 2.54 - 0.9  # the page's text height, less room for a caption
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


def _typst_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\t", "    ") + '"'


def passage_columns(meta: dict) -> int:
    """2 for a long passage of short lines (verse, dialogue), set in two columns to halve its
    height; else 1. Short: 3 lines in 4 fit half the frame's width (44 characters) unwrapped."""
    lengths = sorted(len(line) for _, text in meta["parts"] for line in text.split("\n"))
    return 2 if len(lengths) > 40 and lengths[int(0.75 * (len(lengths) - 1))] <= 44 else 1


def passage_typst(meta: dict) -> str:
    """A framed passage as a raw typst block (the template's `passage` function)."""
    parts = []
    for heading, text in meta["parts"]:
        lines = "".join(_typst_string(line) + ", " for line in text.split("\n"))
        parts.append(f"({_typst_string(heading) if heading else 'none'}, ({lines})),")
    caption = f"[#strong[{meta['name']}.] #{_typst_string(meta['caption'])}]"
    return (f"```{{=typst}}\n#passage({caption}, ({' '.join(parts)}), cols: {passage_columns(meta)}, name: {_typst_string(meta['name'])})\n"
            f"<{meta['label']}>\n```")


def figure_size(meta: dict):
    """(width, height) in inches of a figure on the page, and the scale from its drawn size (<= 1)."""
    scale = min(1.0, TEXT_WIDTH_IN / meta["width_in"], TEXT_HEIGHT_IN / meta["height_in"])
    return meta["width_in"] * scale, meta["height_in"] * scale, scale


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


def metadata_args(nb) -> list:
    """pandoc -M options for the title block, from the notebook's metadata."""
    md = nb.metadata
    args = ["-M", f"title={md.get('title', 'Report')}"]
    for a in md.get("authors", []):
        args += ["-M", f"author={a['name'] if isinstance(a, dict) else a}"]
    for key in ("course", "date"):
        if md.get(key):
            args += ["-M", f"{key}={md[key]}"]
    return args


def to_typst(nb, out_dir: Path, stem: str) -> Path:
    """Write <stem>.md (pandoc Markdown) and <stem>.typ (typst) in out_dir; returns the .typ path."""
    import subprocess

    import pypandoc

    media = out_dir / f"{stem}_files"
    md = out_dir / f"{stem}.md"
    md.write_text(notebook_markdown(nb, media))
    typ = out_dir / f"{stem}.typ"
    cmd = [pypandoc.get_pandoc_path(), str(md), "-f", "markdown", "-t", "typst", "-s", "--columns=1000",
           "--template", str(TEMPLATE), "--resource-path", str(media), "-o", str(typ)] + metadata_args(nb)
    subprocess.run(cmd, check=True)
    # pandoc writes image paths as given in the Markdown: make them relative to the .typ file
    text = typ.read_text()
    text = re.sub(r'image\("([^"/]+\.png)"', lambda m: f'image("{media.name}/{m.group(1)}"', text)
    typ.write_text(keep_figures_before_passages(fix_math(text)))
    return typ


def keep_figures_before_passages(text: str) -> str:
    """A figure directly before a framed passage (or before the one paragraph that leads into it) is
    set where it stands (placement: none): a float there would be placed at the foot of the page the
    passage starts on, cutting into the passage."""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if not line.startswith("#passage("):
            continue
        j = i - 1
        while j >= 0 and not lines[j].strip():
            j -= 1
        if j >= 0 and lines[j][:1] not in ("#", "<", "=", ")", " ", "-", "+"):  # one paragraph of text
            j -= 1
            while j >= 0 and not lines[j].strip():
                j -= 1
        if j < 0 or not lines[j].startswith("<fig-"):
            continue
        while j >= 0 and not lines[j].startswith("#figure("):
            j -= 1
        if j >= 0 and lines[j].startswith("#figure(image("):
            lines[j] = lines[j].replace("#figure(", "#figure(placement: none, ", 1)
    return "\n".join(lines)


def fix_math(text: str) -> str:
    """Mend pandoc's typst maths where typst reads it otherwise: \\mathrm{word} came out as spaced
    letters, \\; as no space, and \\odot as a symbol name typst 0.15 no longer knows."""
    text = re.sub(r"upright\(((?:\w )+\w)\)", lambda m: 'op("' + m.group(1).replace(" ", "") + '")', text)
    return text.replace("#h(0em)", "#h(0.28em)").replace("dot.circle", "⊙")


def compile_pdf(typ: Path, pdf: Path) -> None:
    """typst -> PDF with typst's own fonts (the output does not depend on the machine's fonts)."""
    import typst

    typst.compile(str(typ), output=str(pdf), root=str(typ.parent), ignore_system_fonts=True)


def caption_positions(typ: Path) -> list:
    """Where each figure caption ends on its page (typst query): [{page, y, page-height, margin-bottom}] in pt."""
    import typst

    return json.loads(typst.query(str(typ), "<caption-end>", field="value", root=str(typ.parent),
                                  ignore_system_fonts=True))


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
