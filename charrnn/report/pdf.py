"""The PDF side of the report: pandoc Markdown -> typst (pandoc's typst writer, pypandoc-binary, with
our template report_template.typ and a few fixes of its output) -> PDF (the `typst` package, its own
fonts only); framed passages as typst; and where the headings, figures and lists ended up on the
pages (layout_facts), with what breaks the float rules there (layout_problems)."""
from __future__ import annotations

import json
import re
from pathlib import Path

TEMPLATE = Path(__file__).with_name("report_template.typ")
TEXT_WIDTH_IN = (21 - 2 * 2.0) / 2.54  # the template's text width (A4, its margins)
TEXT_HEIGHT_IN = (29.7 - 1.8 - 2.0) / 2.54 - 0.9  # the page's text height, less room for a caption


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


def typst_from_markdown(markdown: str, md: Path, media: Path, meta_args: list) -> Path:
    """Write `markdown` to the .md file `md` and pandoc's typst of it, with our template and its
    fixes, beside it (same stem, .typ); `media` holds the images. Returns the .typ path."""
    import subprocess

    import pypandoc

    md.write_text(markdown)
    typ = md.with_suffix(".typ")
    cmd = [pypandoc.get_pandoc_path(), str(md), "-f", "markdown", "-t", "typst", "-s", "--columns=1000",
           "--template", str(TEMPLATE), "--resource-path", str(media), "-o", str(typ)] + meta_args
    subprocess.run(cmd, check=True)
    # pandoc writes image paths as given in the Markdown: make them relative to the .typ file
    text = typ.read_text()
    text = re.sub(r'image\("([^"/]+\.png)"', lambda m: f'image("{media.name}/{m.group(1)}"', text)
    typ.write_text(keep_figures_before_passages(float_figures(fix_math(text))))
    return typ


# A line of pandoc's typst that is a paragraph of text (it may open with a link or bold text), not a
# figure, passage, heading, label, list item or the end of a block
PARAGRAPH = re.compile(r"(?!#(float-figure|figure|passage|place|table|block)\b)(?![<=)\s+-])\S")


def keep_figures_before_passages(text: str, paragraphs: int = 3) -> str:
    """A figure or table directly before a framed passage (or before the few paragraphs, at most
    `paragraphs`, that lead into it) is set where it stands (placement: none): a float there would be
    placed at the foot of the page the passage starts on, cutting into the passage."""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if not line.startswith("#passage("):
            continue
        j = i - 1
        while j >= 0 and not lines[j].strip():
            j -= 1
        for _ in range(paragraphs):  # paragraphs of text: each one line (pandoc's --columns=1000)
            if j < 0 or not PARAGRAPH.match(lines[j]):
                break
            j -= 1
            while j >= 0 and not lines[j].strip():
                j -= 1
        if j > 0 and lines[j] == ")" and lines[j - 1].startswith("  lbl: <"):
            lines[j - 1] = lines[j - 1].replace("placement: auto", "placement: none")
    return "\n".join(lines)


FIGURE_BLOCK = re.compile(r"^#figure\(image\((.*?)\n\)\n<(fig-[a-z0-9-]+)>$", re.S | re.M)
TABLE_BLOCK = re.compile(r"^#figure\(\n(  align\(center\)\[#table\(.*?)\n  , kind: table\n  \)\n<(tbl-[a-z0-9-]+)>$",
                         re.S | re.M)


def float_figures(text: str) -> str:
    """pandoc's `#figure(image(...), caption: [...])` (or its figure of a table) followed by its label
    becomes the template's `#float-figure(image(...), caption: [...], lbl: <label>, placement: auto)`:
    a floating figure whose place in the text and placed top are marked for layout_facts."""
    text = FIGURE_BLOCK.sub(lambda m: f"#float-figure(image({m.group(1)},\n  lbl: <{m.group(2)}>, placement: auto,\n)", text)
    return TABLE_BLOCK.sub(lambda m: f"#float-figure(\n{m.group(1)}\n  , kind: table,\n  lbl: <{m.group(2)}>, placement: auto,\n)", text)


def fix_math(text: str) -> str:
    """Mend pandoc's typst maths where typst reads it otherwise: \\mathrm{word} came out as spaced
    letters, \\; as no space, and \\odot as a symbol name typst 0.15 no longer knows."""
    text = re.sub(r"upright\(((?:\w )+\w)\)", lambda m: 'op("' + m.group(1).replace(" ", "") + '")', text)
    return text.replace("#h(0em)", "#h(0.28em)").replace("dot.circle", "⊙")


def compile_pdf(typ: Path, pdf: Path) -> None:
    """typst -> PDF with typst's own fonts (the output does not depend on the machine's fonts), then
    the float rules (layout_problems) applied and the document compiled again, until none is broken
    or nothing more can be done. A figure placed above its section's heading goes to the foot of a
    page instead (`placement: bottom`); one placed below a later section's heading is set where it
    stands, or at the top of its page if its own section's heading is on an earlier page; one carried
    past a later heading on an earlier page is placed before that heading (place.flush). A list split by a figure: the figure
    is set where it stands if it stands just before the list on that page, or goes to the foot of
    the page if it stands just after the list on the page where the list ends; else the list is kept
    whole on one page if it fits on one and moving it leaves at most a quarter of its page empty
    (else it stays split: layout_problems still names it). A framed
    passage that fits on a page is set whole on one, where it starts if it fits in the rest of that
    page, else at the top of the next if that leaves at most a quarter of the page empty, else in one
    column (read down across the page break), unless it is made of headed parts. A list or passage
    once decided stays so; it stops when nothing changes, or after 16 compilations."""
    import typst

    kept: set = set()
    for _ in range(16):
        typst.compile(str(typ), output=str(pdf), root=str(typ.parent), ignore_system_fonts=True)
        text, before = typ.read_text(), len(kept)
        facts = layout_facts(typ)
        for problem in layout_problems(facts):
            kind, what = problem[0], problem[1]
            if kind in ("figure above its heading", "set where it stands", "to the foot"):
                place = "none" if kind == "set where it stands" else "bottom"
                text = re.sub(rf"lbl: <{what}>, placement: \w+,", f"lbl: <{what}>, placement: {place},", text)
            elif kind == "below a later heading" and problem[3] == "flush":  # floats placed before that heading
                text = flush_before_heading(text, problem[2])
            elif kind == "below a later heading":  # where it stands, or at the top of its page
                text = re.sub(rf"lbl: <{what}>, placement: \w+,", f"lbl: <{what}>, placement: {problem[3]},", text)
            elif kind == "list split" and problem[2] <= 1 and problem[3] <= 0.25:
                kept.add(what)
        for p in kind_of(facts, "passage"):
            room = (facts["text-bottom"] - p["y"]) / facts["text-height"]
            if p["whole"] <= facts["text-height"] and f'name: "{p["name"]}")' in text:
                fit = ("whole" if p["whole"] / facts["text-height"] <= room or room <= 0.25
                       else "auto" if p["headed"] else "one-column")
                text = text.replace(f'name: "{p["name"]}")', f'name: "{p["name"]}", fit: "{fit}")'.replace('"auto"', "auto"))
                break  # one at a time: where the next one starts depends on this one
        if text == typ.read_text() and len(kept) == before:
            return
        numbers = "".join(f"{n}, " for n in sorted(kept))
        typ.write_text(re.sub(r"^#let keep-whole = \(.*\)$", f"#let keep-whole = ({numbers})", text, count=1, flags=re.M))


def flush_before_heading(text: str, n: int) -> str:
    """The typst text with every pending float placed before its n-th heading (from 1): a figure may
    float to the top of a later page, but not past the start of the next section."""
    lines = text.split("\n")
    at = [i for i, line in enumerate(lines) if re.match(r"=+ \S", line)][n - 1]
    if at == 0 or lines[at - 1] != "#place.flush()":
        lines.insert(at, "#place.flush()")
    return "\n".join(lines)


def layout_facts(typ: Path) -> dict:
    """Where the headings, image figures (their anchor in the text and their placed top) and lists
    (start and end) are, from the template's <layout> metadata: {"page-height", "text-height",
    "items": [{kind, page, y, ...}]} in pt, the items in document order within each kind."""
    import typst

    return json.loads(typst.query(str(typ), "<layout>", field="value", root=str(typ.parent),
                                  ignore_system_fonts=True))[0]


def kind_of(facts: dict, kind: str) -> list:
    return [it for it in facts["items"] if it["kind"] == kind]


def layout_problems(facts: dict) -> list:
    """What breaks the float rules, as (kind, what, ...): ("figure above its heading", label), a
    figure (or table) placed above the heading of the section it is shown in; ("below a later
    heading", label, n, fix), one placed after the n-th heading (from 1), a later section's (fix:
    "flush", pending floats placed before that heading, when the heading is on an earlier page; else
    "top" of its page when its own section's heading is on an earlier page; else "none", where it
    stands); ("list split", n, height, gap, later),
    the n-th list (from 1) runs over a page break with a figure placed beside it, on its first page
    below its start or on a later page above its end (height: the list's height with the figure,
    gap: the room from its start, or from the heading just above it, to the foot of its first page,
    both as shares of the text height; later: the labels of those figures carried over from an
    earlier page); ("set where it stands", label), a figure that stands just before the list and
    was placed below its start on that page; ("to the foot", label), one that stands just after the
    list and was placed above its end on that page."""
    at = lambda it: (it["page"], it["y"])  # noqa: E731
    kind = lambda k: kind_of(facts, k)  # noqa: E731
    headings, figures, anchors = kind("heading"), kind("figure"), kind("anchor")
    problems = []
    for anchor in anchors:
        top = next(f for f in figures if f["label"] == anchor["label"])
        if anchor["headings"] and at(top) < at(headings[anchor["headings"] - 1]):
            problems.append(("figure above its heading", anchor["label"]))
        later = [(n, h) for n, h in enumerate(headings[anchor["headings"]:], anchor["headings"] + 1) if at(h) < at(top)]
        if later:
            n, h = later[0]
            own = headings[anchor["headings"] - 1]["page"] if anchor["headings"] else 0
            fix = "flush" if h["page"] < top["page"] else "top" if own < top["page"] else "none"
            problems.append(("below a later heading", anchor["label"], n, fix))
    for n, (start, end) in enumerate(zip(kind("list"), kind("list-end")), 1):
        if start["page"] == end["page"]:
            continue
        height = (facts["text-bottom"] - start["y"] + end["y"] - facts["text-top"]) / facts["text-height"]
        above = [(i, h) for i, h in enumerate(headings, 1)
                 if h["page"] == start["page"] and 0 <= start["y"] - h["y"] < 40]
        gap = (facts["text-bottom"] - min([h["y"] for _, h in above] + [start["y"]])) / facts["text-height"]
        inside = [f for f in figures if (f["page"] == start["page"] and f["y"] > start["y"])
                  or start["page"] < f["page"] < end["page"] or (f["page"] == end["page"] and f["y"] < end["y"])]
        later = []
        for f in inside:
            anchor = next(a for a in anchors if a["label"] == f["label"])
            if f["page"] == start["page"] == anchor["page"] and anchor["y"] <= start["y"]:
                problems.append(("set where it stands", f["label"]))
            elif f["page"] == end["page"] == anchor["page"] and anchor["y"] >= end["y"]:
                problems.append(("to the foot", f["label"]))
            elif f["page"] > anchor["page"]:
                later.append(f["label"])
        if inside:
            problems.append(("list split", n, height, gap, later))
    return problems


def caption_positions(typ: Path) -> list:
    """Where each figure caption ends on its page (typst query): [{page, y, page-height, margin-bottom}] in pt."""
    import typst

    return json.loads(typst.query(str(typ), "<caption-end>", field="value", root=str(typ.parent),
                                  ignore_system_fonts=True))
