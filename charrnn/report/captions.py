"""Numbered figures, tables and framed text passages for the report notebook, with their captions.

Each `show_*` function displays its item in the notebook (and so in the HTML report) with a
caption such as "Figure 3. ...", and attaches metadata under the key "report" to the output, which
`charrnn.report.render` reads to typeset the same item in the PDF (a captioned figure, a captioned table, a
framed passage). Numbers are given in the order the items are first shown, one counter per kind;
showing a label again (re-running a cell) keeps its number.

Referring to an item from text: write a Markdown link whose text is the kind and whose target is
the label, e.g. ``[Figure](#fig-main-loss)``, ``[Table](#tbl-gradcheck)`` or
``[Passage](#psg-best-1000)``, in a Markdown cell or in Markdown that a cell displays. After the
notebook has run, `charrnn.report.render.resolve_references` turns the link text into "Figure 3" (any
label that was never shown is an error), so the text can refer to items shown later.

Cell tags read by the renderer: "html-only" (the cell is left out of the PDF: text for notebook
users), "title" (the title cell: the PDF prints its own title block).
"""
from __future__ import annotations

import base64
import html
import io
import re

from charrnn.report.plots import check_figure_name, markdown_table, save_figure

KINDS = {"fig": "Figure", "tbl": "Table", "psg": "Passage"}
_numbers: dict = {kind: {} for kind in KINDS}
LABEL = re.compile(r"^(fig|tbl|psg)-[a-z0-9][a-z0-9-]*$")


def number(label: str) -> int:
    """The number of `label` ("fig-...", "tbl-..." or "psg-..."), given on first use."""
    if not LABEL.match(label):
        raise ValueError(f"label {label!r}: use fig-..., tbl-... or psg-... (lower case, digits, hyphens)")
    seen = _numbers[label[:3]]
    if label not in seen:
        seen[label] = len(seen) + 1
    return seen[label]


def ref(label: str) -> str:
    """'Figure 3' for a label (numbering it if it is new): for references in text a cell computes."""
    return f"{KINDS[label[:3]]} {number(label)}"


def _caption_markdown(label: str, caption: str) -> str:
    return f'<a id="{label}"></a>**{ref(label)}.** {caption}'


def _report_meta(label: str, caption: str, kind: str, **extra) -> dict:
    return {"report": dict(kind=kind, label=label, number=number(label), name=ref(label), caption=caption, **extra)}


def min_font_size(fig) -> float:
    """The smallest font size (points) of the visible, non-empty text in a matplotlib figure."""
    from matplotlib.text import Text

    sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    return float(min(sizes)) if sizes else 0.0


def show_figure(fig, label: str, caption: str, name: str | None = None, folder="figures", dpi=150):
    """Show a matplotlib figure with a numbered caption below it; also saved as figures/<name>.png/.pdf.

    The PDF places the image at its drawn size (figure inches), so that the font sizes chosen in the
    figure are the sizes on the page. Returns nothing (no Out[n] echo)."""
    import matplotlib.pyplot as plt
    from IPython.display import Markdown, display

    number(label)
    if name is not None:
        check_figure_name(name)
        save_figure(fig, name, folder)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    png = buf.getvalue()
    width_px = int.from_bytes(png[16:20], "big")  # the PNG header's IHDR width and height
    height_px = int.from_bytes(png[20:24], "big")
    meta = _report_meta(label, caption, "figure", width_in=width_px / dpi, height_in=height_px / dpi,
                        min_font_pt=min_font_size(fig))
    plt.close(fig)
    display({"image/png": base64.b64encode(png).decode(), "text/plain": f"<{ref(label)}>"},
            metadata={**meta, "image/png": {"width": round(width_px * 96 / dpi)}}, raw=True)
    display(Markdown(_caption_markdown(label, caption)), metadata={"report": {"kind": "caption", "label": label}})


def show_table(header, rows, label: str, caption: str, align=None):
    """Show a Markdown table with a numbered caption above it. Returns nothing."""
    from IPython.display import Markdown, display

    table = markdown_table(header, rows, align)
    display(Markdown(_caption_markdown(label, caption) + "\n\n" + table),
            metadata=_report_meta(label, caption, "table", table=table))


RETURN_NOTE = "(\u21b5 ends each line of the text; a line too long for the frame goes on, indented, below.)"


def show_passage(parts, label: str, caption: str):
    """Show text in a frame, its own line breaks kept: each line of the text ends with a return
    sign, and a line too long for the frame continues, indented, on the next (so wrapping by the
    page is told apart from the text's newlines); the caption ends with RETURN_NOTE, which says so.
    `parts` is a string, or a list of (heading, text) shown one after the other in the same frame.
    In the PDF a passage that fits on a page is set whole on one, or else in one column (see
    charrnn.report.pdf.compile_pdf). Returns nothing."""
    from IPython.display import Markdown, display

    parts = [(None, parts)] if isinstance(parts, str) else [(h, t) for h, t in parts]
    caption = f"{caption} {RETURN_NOTE}"
    rows = []
    for heading, text in parts:
        if heading:
            rows.append(f'<div style="font-weight:bold;margin-top:0.4em">{html.escape(heading)}</div>')
        for line in text.split("\n"):
            rows.append('<div style="padding-left:2em;text-indent:-2em;white-space:pre-wrap">'
                        f'{html.escape(line)}<span style="color:#999">\u21b5</span></div>')
    body = ("<div style=\"border:1px solid #888;padding:6px 10px;font-family:monospace;font-size:85%;"
            f"line-height:1.35\">{''.join(rows)}</div>")
    display(Markdown(_caption_markdown(label, caption)), metadata={"report": {"kind": "caption", "label": label}})
    display({"text/html": body, "text/plain": "\n".join(t for _, t in parts)},
            metadata=_report_meta(label, caption, "passage", parts=[[h, t] for h, t in parts]), raw=True)


def excerpt_bounds(text: str, after: int = 1000, length: int = 420) -> tuple:
    """(start, stop) of an excerpt of `text` for show_passage: whole lines of at most `length` characters
    from the first line start after character `after`. A shorter text, or one without newlines,
    gives what it has: the excerpt starts at a line start (or at 0) and ends at a newline, a space
    or the end of the text, so it is never empty for a non-empty text."""
    n = len(text)
    i = text.find("\n", after, max(after, n - 1))
    start = i + 1 if i >= 0 else text.rfind("\n", 0, max(0, n - length)) + 1
    end = min(n, start + length)
    j = text.rfind("\n", start, end)
    if j > start and end < n:
        stop = start + len(text[start:j].rstrip("\n"))
    elif end < n and text.rfind(" ", start, end) > start:
        stop = text.rfind(" ", start, end)
    else:
        stop = start + len(text[start:end].rstrip("\n"))
    return start, stop if stop > start else end
