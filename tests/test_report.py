"""The notebook: committed clean; the caption machinery; a quick run renders to HTML and, from pip
packages alone, to a PDF with numbered captions, no notebook mechanics, every section, figures inside the pages."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from charrnn.report import render

ROOT = Path(__file__).resolve().parent.parent
NB = ROOT / "assignment4.ipynb"
JUPYTER = [sys.executable, "-m", "jupyter"]
SECTIONS = ["Summary", "Set-up and data", "Part I: the assignment", "The model", "Gradient check", "Training",
            "The best model", "Discussion", "Part II: beyond the assignment", "Sampling controls",
            "Held-out evaluation", "Kneser–Ney n-grams", "Differences from the reference", "What each comparison changes",
            "Seed-to-seed spread", "Inside the network", "Conclusion",
            "The lowest smooth loss and the text it was measured on", "Learning rates", "Trained until it stops improving"]
FIGURES = ["smooth_loss_main_run", "smooth_loss_long_run", "sampling_temperature_top_p",
           "validation_reference_run", "comparisons", "differences_from_reference", "saturation",
           "hidden_units_text", "next_character_candidates", "smooth_loss_by_stretch",
           "learning_rate_sweep", "converged_run"]


def test_notebook_is_committed_without_outputs():
    nb = json.loads(NB.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    assert "parameters" in code[0]["metadata"].get("tags", [])
    text = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    headings = [line.lstrip("#").strip() for line in text.split("\n") if line.startswith("#")]
    for section in SECTIONS:
        assert any(h.startswith(section) or section in h for h in headings), section


# Words that belong to the notebook, not to a PDF whose code is hidden.
# Words of the notebook's mechanics that the PDF never shows; the one command a reader needs, the one that
# renders the report on another corpus ("make report DATA=..."), is the exception.
MECHANICS = ["next cell", "this cell", "the cell", "RNN_", "environment variable", "make bench",
             "runs/", "Traceback", "parameters cell", "eta="]
PDF_TOOLS = ("pandoc", "xelatex", "latex", "pdflatex")


def pdf_text(path) -> tuple:
    """(text of each page) of a PDF, read with pypdf."""
    from pypdf import PdfReader

    return [page.extract_text() or "" for page in PdfReader(str(path)).pages]


def without_tex_path() -> str:
    """PATH without any folder that holds pandoc or a TeX engine: the PDF route must not need them."""
    keep = [d for d in os.environ.get("PATH", "").split(os.pathsep)
            if d and not any(os.path.exists(os.path.join(d, t)) for t in PDF_TOOLS)]
    return os.pathsep.join(keep)


def execute(src: Path, folder: Path, env=None, timeout=900) -> Path:
    """Execute a notebook (the kernel's working folder is the notebook's) with nbconvert over IPC
    sockets, as `make report` does, into folder/executed.ipynb. The sockets' path is absolute, since
    nbconvert and the kernel may work in different folders."""
    run = subprocess.run(JUPYTER + ["nbconvert", "--to", "notebook", "--execute", "--KernelManager.transport=ipc",
                                    f"--KernelManager.ip={folder}/kernel", "--output-dir", str(folder),
                                    "--output", "executed.ipynb", str(src)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "without encryption" not in run.stderr
    return folder / "executed.ipynb"


def check_geometry(typ: Path, executed: Path):
    """Every figure caption ends above the bottom margin of its page; every figure is drawn at a size
    where its smallest text is at least 8 pt, the size of a footnote."""
    ends = render.caption_positions(typ)
    nb = nbformat.read(executed, 4)
    figures = [m for m in render.numbered_items(nb).values() if m["kind"] == "figure"]
    assert len(ends) >= len(figures)
    for e in ends:
        assert e["y"] <= e["page-height"] - e["margin-bottom"] + 0.5, e
    for m in figures:
        _, _, scale = render.figure_size(m)
        assert m["min_font_pt"] * scale >= 8, (m["label"], m["min_font_pt"], scale)


def small_notebook(extra_cells=()):
    """A notebook using every part of the caption machinery, and a reference made before the item."""
    v4 = nbformat.v4
    nb = v4.new_notebook(metadata={"title": "Caption machinery", "authors": [{"name": "A. Tester"}],
                                   "course": "Course X"})
    nb.cells = [
        v4.new_markdown_cell("# Title cell", metadata={"tags": ["title"]}),
        v4.new_markdown_cell("# Results\n\nAs [Figure](#fig-curve) and [Table](#tbl-numbers) show, and "
                             "[Passage](#psg-text) reads."),
        v4.new_markdown_cell("Run the next cell to train.", metadata={"tags": ["html-only"]}),
        v4.new_code_cell(
            "import matplotlib\nmatplotlib.use('agg')\nimport matplotlib.pyplot as plt\nfrom charrnn import report\n"
            "fig, ax = plt.subplots(figsize=(5, 2.5))\nax.plot([1, 3, 2])\n"
            "report.show_figure(fig, 'fig-curve', 'A curve with $\\\\eta$.')\n"
            "report.show_table(['setting', 'bits/char'], [['a', '1.5'], ['b', '2.0']], 'tbl-numbers', 'Two numbers.')\n"
            "report.show_passage('ROMEO.\\nA line long enough to be wrapped by the page ' + 'word ' * 40 + '\\n\\nend',"
            " 'psg-text', 'A passage.')"),
        *extra_cells,
    ]
    return nb


def small_executed(tmp_path, extra_cells=()) -> Path:
    nbformat.write(small_notebook(extra_cells), tmp_path / "small.ipynb")
    env = dict(os.environ, PATH=without_tex_path(), PYTHONPATH=str(ROOT))
    return execute(tmp_path / "small.ipynb", tmp_path, env=env, timeout=300)


def test_captions_numbers_references_and_html_only_cells(tmp_path):
    executed = small_executed(tmp_path)
    render.render(executed)
    html = (tmp_path / "executed.html").read_text()
    assert "<strong>Figure 1.</strong>" in html and "Figure 1</a>" in html and "Run the next cell" in html
    pages = pdf_text(tmp_path / "executed.pdf")
    text = "\n".join(pages)
    for item in ("Figure 1.", "Table 1.", "Passage 1."):
        assert item in text  # the caption
        assert text.count(item.rstrip(".")) >= 2  # and a reference to it
    assert "As Figure 1 and Table 1 show" in text
    assert "Run the next cell" not in text and "Title cell" not in text
    assert "Caption machinery" in text and "A. Tester" in text and "Course X" in text
    check_geometry(tmp_path / "executed.typ", executed)


def test_reference_to_an_unknown_label_is_an_error(tmp_path):
    executed = small_executed(tmp_path, [nbformat.v4.new_markdown_cell("See [Figure](#fig-missing).")])
    with pytest.raises(render.RenderError, match="fig-missing"):
        render.render(executed)


def test_geometry_check_sees_a_figure_past_the_bottom_margin(tmp_path):
    """The check of check_geometry can fail: an image taller than the page, placed without scaling."""
    from PIL import Image

    Image.new("RGB", (100, 440), "white").save(tmp_path / "tall.png")  # 11 in at 2.5 in wide: taller than the text
    (tmp_path / "doc.md").write_text("Text.\n\n![**Figure 1.** Too tall.](tall.png){width=2.5in}\n")
    import pypandoc

    typ = tmp_path / "doc.typ"
    subprocess.run([pypandoc.get_pandoc_path(), str(tmp_path / "doc.md"), "-t", "typst", "-s", "--template",
                    str(render.TEMPLATE), "-M", "title=T", "-o", str(typ)], check=True)
    ends = render.caption_positions(typ)
    assert ends and any(e["y"] > e["page-height"] - e["margin-bottom"] for e in ends)


def test_text_panels_of_corpus_like_samples_print_at_8_pt():
    """The geometry check sees only the quick report, whose samples can be shorter in printed lines
    than the full report's: the sampling figure, six panels of 330 characters of dialogue (short
    lines, empty lines), must itself fit the page unscaled, so that its 8-pt text prints at 8 pt."""
    import matplotlib

    matplotlib.use("agg")
    from charrnn.report.plots import plot_text_panels

    corpus = Path(__file__).resolve().parents[1] / "data" / "shakespeare.txt"
    text = corpus.read_text() if corpus.exists() else ("OTHELLO:\nWhat, ho!\n\nIAGO:\nMy lord, a word.\n\n" * 30)
    start = text.index("\n\n", 5000) + 2
    fig = plot_text_panels([(f"panel {i}", text[start + 330 * i: start + 330 * (i + 1)]) for i in range(6)])
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")  # as captions.show_figure measures it
    png = buf.getvalue()
    w, h = int.from_bytes(png[16:20], "big") / 100, int.from_bytes(png[20:24], "big") / 100
    _, _, scale = render.figure_size({"width_in": w, "height_in": h})
    assert scale == 1.0, (w, h)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    env = dict(os.environ, RNN_QUICK="1", RNN_PROGRESS="0", RNN_RUNS=str(out / "runs"), RNN_SEEDS="3",
               RNN_FIGURES=str(out / "figures"), PATH=without_tex_path())
    executed = execute(NB, out, env=env)
    run = subprocess.run([sys.executable, "-m", "charrnn.report.render", str(executed)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return out


def test_quick_report_executes_and_embeds_everything(rendered):
    html = (rendered / "executed.html").read_text()
    assert "Verdict: pass" in html
    assert html.count("data:image/png;base64") >= len(FIGURES)
    for section in SECTIONS:
        assert section in html
    executed = json.loads((rendered / "executed.ipynb").read_text())
    outputs = [o for c in executed["cells"] if c["cell_type"] == "code" for o in c["outputs"]]
    assert not [o for o in outputs if o["output_type"] == "error"]
    assert not [o for o in outputs if o.get("name") == "stderr" and "Traceback" in "".join(o["text"])]
    for name in FIGURES:
        for ext in ("png", "pdf"):
            assert (rendered / "figures" / f"{name}.{ext}").stat().st_size > 1000


def test_quick_report_html_works_offline(rendered, tmp_path):
    """The report's own formulas are all MathML and nothing is fetched from the network; opened in
    headless Chromium offline (where one is installed), its visible text holds no raw LaTeX."""
    from test_html import RAW_LATEX, browser, visible_text

    from charrnn.report.html import network_references

    page = rendered / "executed.html"
    text = page.read_text()
    assert network_references(text) == [] and "MathJax" not in text
    assert text.count("<math") >= 10 and 'class="math-tex"' not in text
    if browser() is None:
        pytest.skip("no Chromium installed (apt-get install chromium): the report is not opened in a browser")
    shown = visible_text(page, tmp_path)
    assert "Gradient check" in shown and not RAW_LATEX.findall(shown), RAW_LATEX.findall(shown)[:10]


def test_quick_report_pdf_reads_like_a_paper(rendered):
    """From the PDF's text: numbered captions for every figure and table, each referred to; no
    notebook mechanics; every section; the title block; figures inside the pages."""
    assert shutil.which("pandoc", path=without_tex_path()) is None
    pages = pdf_text(rendered / "executed.pdf")
    text = "\n".join(pages)
    flat = re.sub(r"\s+", " ", text)
    nb = nbformat.read(rendered / "executed.ipynb", 4)
    for cell in nb.cells:  # what goes to the PDF: no console lines, no image without its caption
        if cell.cell_type == "code" and "html-only" not in cell.metadata.get("tags", []):
            for out in cell.outputs:
                assert out.output_type != "stream" or out.name != "stdout", (cell.id, out.text[:200])
                assert "image/png" not in out.get("data", {}) or "report" in out.metadata, cell.id
    in_pdf = nbformat.v4.new_notebook(cells=[c for c in nb.cells if not set(c.metadata.get("tags", [])) & render.SKIP_TAGS])
    items = render.numbered_items(in_pdf)  # a passage of the HTML only (the last one) is not in the PDF
    assert sum(m["kind"] == "figure" for m in items.values()) >= 3
    for kind, name in (("figure", "Figure"), ("table", "Table"), ("passage", "Passage")):
        numbers = sorted(m["number"] for m in items.values() if m["kind"] == kind)
        assert numbers == list(range(1, len(numbers) + 1)), kind
        for n in numbers:
            assert f"{name} {n}." in flat, f"{name} {n}: no caption"
            assert len(re.findall(rf"{name} {n}\b", flat)) >= 2, f"{name} {n} is never referred to"
    for word in MECHANICS:
        assert word not in flat, word
    assert flat.count("make report") == flat.count("make report DATA="), "make report only as the command for another corpus"
    for section in SECTIONS:
        assert section in flat, section
    assert nb.metadata["title"] in flat  # the title block, from the notebook's metadata
    check_geometry(rendered / "executed.typ", rendered / "executed.ipynb")


def test_notebook_calls_rnn_core_and_the_wings_public_names_only():
    """The notebook takes the maths from `rnn_core` and everything else from the package's wings,
    by their public names: it never imports a module's private name or a numba kernel directly."""
    nb = json.loads(NB.read_text())
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert "import rnn_core as rc" in code
    imports = re.findall(r"^\s*(?:from (\S+) import (.+)|import (\S+))", code, flags=re.M)
    for frm, names, plain in imports:
        module = frm or plain
        if module.startswith("charrnn"):
            assert module in ("charrnn", "charrnn.training", "charrnn.study", "charrnn.report"), module
        assert not any(n.strip().startswith("_") for n in names.split(",")), names
    assert not re.search(r"\b(?:rc|training|study|report|kernels)\._", code)


def test_summary_cells_move_to_just_after_the_title():
    """The summary is computed at the end of the notebook (when every number is known) and read first."""
    v4 = nbformat.v4
    nb = v4.new_notebook()
    nb.cells = [v4.new_markdown_cell("T", metadata={"tags": ["title"]}), v4.new_markdown_cell("a"),
                v4.new_markdown_cell("S", metadata={"tags": ["summary"]}), v4.new_markdown_cell("b"),
                v4.new_code_cell("s", metadata={"tags": ["summary"]})]
    render.summary_first(nb)
    assert [c.source for c in nb.cells] == ["T", "S", "s", "a", "b"]


def foot_space(pdf: Path) -> list:
    """The share of each page's text area left empty below its last ink, measured as the project's
    page-space tool does: pages drawn at 20 dpi in grey (pdftoppm), the top 7% and bottom 9% of the
    page (running head, page number) left out, ink being a pixel darker than 200."""
    from PIL import Image

    out = pdf.parent / "pagespace"
    out.mkdir(exist_ok=True)
    subprocess.run(["pdftoppm", "-r", "20", "-gray", str(pdf), str(out / "p")], check=True)
    shares = []
    for f in sorted(out.iterdir()):
        img = Image.open(f)
        w, h = img.size
        px = img.load()
        top, bottom = int(0.07 * h), int(0.91 * h)
        last = max([y for y in range(top, bottom) if any(px[x, y] < 200 for x in range(w))], default=top)
        shares.append(1 - (last - top + 1) / (bottom - top))
    return shares


def long_notebook_cells():
    """Sections of text with tall figures and a list, and a 1,000-character passage of short lines
    (the kind set in two columns): enough for the float rules to have work on several pages."""
    v4 = nbformat.v4
    words = ("The smooth loss falls as the network learns the spelling of words and the layout of "
             "speeches, and the held-out score follows it until the rate is too high. ") * 6
    dialogue = "\n".join(f"SPEAKER {i % 3}.\nA short line of verse, number {i}.\n" for i in range(40))[:1000]
    cells = []
    for s in range(4):
        cells.append(v4.new_markdown_cell(f"## Section {s}\n\nSee [Figure](#fig-s{s}).\n\n{words}\n\n{words}"))
        cells.append(v4.new_code_cell(
            "import matplotlib\nmatplotlib.use('agg')\nimport matplotlib.pyplot as plt\nfrom charrnn import report\n"
            f"fig, ax = plt.subplots(figsize=(6, {2.5 + s}))\nax.plot([1, 3, 2])\n"
            f"report.show_figure(fig, 'fig-s{s}', 'A figure of section {s}.')"))
        cells.append(v4.new_markdown_cell(f"{words}\n\n" + "\n".join(f"- **Item {i}.** {words[:300]}" for i in range(5))))
    cells.append(v4.new_code_cell(f"from charrnn import report\nreport.show_passage({dialogue!r}, 'psg-long', 'A long passage.')"))
    cells.append(v4.new_markdown_cell(f"## Last section\n\n[Passage](#psg-long) reads.\n\n{words}"))
    return cells


def test_small_report_pages_are_full_and_floats_stay_in_their_sections(tmp_path):
    """The rendered small notebook, with sections, tall figures, lists and a long passage: no page
    but the last more than 30% empty at its foot (measured, as page-space does); every figure placed
    after the heading of its section; the passage whole on one page or in one column, its caption
    explaining the return sign; none of the float rules left broken."""
    from charrnn.report import captions, pdf

    executed = small_executed(tmp_path, long_notebook_cells())
    render.render(executed, html=False)
    typ = tmp_path / "executed.typ"
    facts = pdf.layout_facts(typ)
    assert [p for p in pdf.layout_problems(facts) if p[0] != "list split"] == []
    headings = pdf.kind_of(facts, "heading")
    at = lambda it: (it["page"], it["y"])  # noqa: E731
    for anchor in pdf.kind_of(facts, "anchor"):
        top = next(f for f in pdf.kind_of(facts, "figure") if f["label"] == anchor["label"])
        assert anchor["headings"] == 0 or at(top) >= at(headings[anchor["headings"] - 1]), anchor
    text = typ.read_text()
    assert re.search(r'name: "Passage 2", fit: "(whole|one-column)"', text), "the long passage is neither whole nor in one column"
    assert "ends each line of the text" in re.sub(r"\s+", " ", "\n".join(pdf_text(tmp_path / "executed.pdf")))
    assert captions.RETURN_NOTE.startswith("(\u21b5")
    if shutil.which("pdftoppm") is None:
        pytest.skip("no pdftoppm (apt-get install poppler-utils): the pages' empty share is not measured")
    shares = foot_space(tmp_path / "executed.pdf")
    assert len(shares) >= 4 and max(shares[:-1]) <= 0.30, [f"{s:.0%}" for s in shares]


def test_layout_problems_sees_a_figure_above_its_heading_and_a_split_list():
    """The float rules' check can fail: a figure placed above its section's heading, one placed below
    a later section's heading, and a list running over a page break with a figure inside it."""
    from charrnn.report import pdf

    facts = {"text-top": 62, "text-bottom": 768, "text-height": 706, "items": [
        {"kind": "heading", "page": 1, "y": 300}, {"kind": "heading", "page": 2, "y": 400},
        {"kind": "anchor", "label": "fig-a", "headings": 1, "page": 1, "y": 320},
        {"kind": "figure", "label": "fig-a", "page": 1, "y": 62},
        {"kind": "anchor", "label": "fig-b", "headings": 1, "page": 1, "y": 700},
        {"kind": "figure", "label": "fig-b", "page": 2, "y": 500},
        {"kind": "list", "page": 1, "y": 600}, {"kind": "list-end", "page": 2, "y": 300}]}
    problems = pdf.layout_problems(facts)
    assert ("figure above its heading", "fig-a") in problems
    assert ("below a later heading", "fig-b", 2, "top") in problems  # the top of page 2 is above that heading
    assert not any(p[0] == "list split" for p in problems)  # fig-b is below the list's end
    facts["items"][5]["y"] = 62
    problems = pdf.layout_problems(facts)
    assert [p[:2] for p in problems if p[0] == "list split"] == [("list split", 1)]
    facts["items"][1]["page"] = 1  # the later heading on page 1, the figure carried to page 2: past its section
    assert ("below a later heading", "fig-b", 2, "flush") in pdf.layout_problems(facts)
    facts["items"][1]["page"], facts["items"][5]["y"] = 2, 500  # the later heading on the figure's page, above it
    facts["items"][4]["page"] = 2
    # its own section's heading on an earlier page: the top of the figure's page is in its section
    assert ("below a later heading", "fig-b", 2, "top") in pdf.layout_problems(facts)
    facts["items"][0] = {"kind": "heading", "page": 2, "y": 80}  # its own heading on that page too: where it stands
    facts["items"][2:4] = [{"kind": "anchor", "label": "fig-a", "headings": 1, "page": 2, "y": 100},
                           {"kind": "figure", "label": "fig-a", "page": 2, "y": 100}]
    facts["items"][4]["y"] = 300
    assert ("below a later heading", "fig-b", 2, "none") in pdf.layout_problems(facts)


def test_a_float_barrier_goes_just_before_the_named_heading_once():
    from charrnn.report import pdf

    text = "= One\ntext\n== Two\n#figure\n=== Three\nmore"
    once = pdf.flush_before_heading(text, 2)
    assert once == "= One\ntext\n#place.flush()\n== Two\n#figure\n=== Three\nmore"
    assert pdf.flush_before_heading(once, 2) == once


def report_prose(typ_text: str) -> str:
    """The body of a report's typst source as prose: from its first heading to the layout metadata,
    without framed passages (sampled text), code, maths, image paths and labels."""
    body = typ_text[typ_text.index("\n= "):].split("// Where the headings, image figures")[0]
    body = re.sub(r"^#passage\(.*$", "", body, flags=re.M)
    body = re.sub(r"```.*?```", "", body, flags=re.S)
    body = re.sub(r"`[^`]*`", "", body)
    body = re.sub(r"(?<!\\)\$[^$]*(?<!\\)\$", " MATH ", body)
    body = re.sub(r'image\("[^"]*"', "", body)
    return re.sub(r"<[a-z0-9-]+>", "", body)


# What the report's own text (prose, captions, table cells) must not hold, with an example of each
NOTATION_RULES = {
    "a symbol set upright (m, B, K, T, h are italic: maths)": (r"(?<![\w$#.])[mBKTh] ?= ?[\d.]", "for m = 200 units"),
    "e-notation (10^-6 is written as a power of ten)": (r"\b\d+(\.\d+)?e[-+]?\d+\b", "a tolerance of 1e-06"),
    "a number of four or more digits without thousands separators": (r"(?<![\d,.\w])\d{4,}(?![\d,])", "1000 characters"),
    "a hyphen for a minus sign": (r"(?<![\w\-\u2212])-\d", "a difference of -0.080"),
}


@pytest.mark.parametrize("rule", NOTATION_RULES)
def test_quick_report_keeps_one_notation(rendered, rule):
    """Symbols italic, small numbers as powers of ten, thousands separators, true minus signs: in the
    report's own text; each rule catches its example (so the check itself can fail)."""
    pattern, example = NOTATION_RULES[rule]
    assert re.search(pattern, example)
    prose = report_prose((rendered / "executed.typ").read_text())
    found = [prose[max(0, m.start() - 40):m.end() + 20].replace("\n", " ") for m in re.finditer(pattern, prose)]
    assert found == [], found[:5]


def test_a_figure_a_few_paragraphs_before_a_passage_is_set_where_it_stands():
    """A float before the paragraphs that lead into a passage (one may open with a link) would land
    at the foot of the page the passage starts on, cutting into it; one further back may float."""
    from charrnn.report import pdf

    figure = "#float-figure(image(\"a.png\"),\n  lbl: <fig-{}>, placement: auto,\n)"
    text = "\n\n".join([figure.format("far"), "A paragraph.", "Another.", "A third.", figure.format("near"),
                        "The lowest smooth loss came late.", "#link(<psg-x>)[Passage 2] gives the samples.",
                        "#passage([cap], ((none, (\"a\", )),), cols: 1, name: \"Passage 2\")"])
    out = pdf.keep_figures_before_passages(text)
    assert "lbl: <fig-near>, placement: none," in out
    assert "lbl: <fig-far>, placement: auto," in out
