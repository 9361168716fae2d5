"""The HTML report works offline: every script and stylesheet it names is local, its images are
embedded, its formulas are MathML; and, opened in headless Chromium with no network, its visible text
holds no raw LaTeX (skipped, saying so, where no Chromium is installed)."""
import html
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
from test_report import small_executed

from charrnn.report import render
from charrnn.report.html import OfflineHTMLExporter, network_references

# Formulas of every kind nbconvert's Markdown reader knows, in cells and in a Markdown output.
MATH_CELLS = [
    nbformat.v4.new_markdown_cell(
        "## The loss $L$ of a sequence\n\nWith $\\frac{\\partial L}{\\partial W}$ and $x_t \\in \\mathbb{R}^K$:\n\n"
        "$$\\begin{aligned} a_t &= W h_{t-1} + U x_t + b, & \\qquad h_t &= \\tanh(a_t), \\\\ "
        "L &= \\sum_{t=1}^{T} -\\log p_{t,y_t}. \\end{aligned}$$\n\n"
        "\\begin{equation} G \\leftarrow G + g^2 \\end{equation}\n\nand \\\\(\\theta \\leftarrow \\theta - \\eta g\\\\), "
        "a price of \\$5 stays text.\n\n| setting | value |\n|---|---|\n| $\\eta$ | $10^{-1}$ |"),
    nbformat.v4.new_code_cell("from IPython.display import Markdown, display\n"
                              "display(Markdown('An output: $$\\\\frac{1}{\\\\sqrt{G + \\\\epsilon}}$$'))"),
]
RAW_LATEX = re.compile(r"\$\$|\\(?:begin|end)\{|\\[A-Za-z]{2,}|\$[^$\s][^$\n]*\$")
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
# Offline whatever the machine: any request that leaves the page goes to a proxy that is not there.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                  "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
                  "--virtual-time-budget=20000"]
# Appended to a copy of the page: once loaded, the text a reader sees (code inputs hidden, as
# formulas in code are the code's, not the page's) is written into the page for --dump-dom to print.
PROBE = """<script>window.addEventListener('load', () => {
  const style = document.createElement('style');
  style.textContent = '.jp-InputArea-editor { display: none !important; }';
  document.head.appendChild(style);
  const pre = document.createElement('pre');
  pre.id = 'visible-text-probe';
  pre.textContent = document.body.innerText;
  document.body.appendChild(pre);
});</script>"""


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """A small executed notebook with formulas, rendered to HTML as the report is."""
    tmp = tmp_path_factory.mktemp("html")
    executed = small_executed(tmp, MATH_CELLS)
    render.render(executed, pdf=False)
    return tmp / "executed.html"


class Resources(HTMLParser):
    """Every resource a page names: (tag, attribute, value) of src and href, and <link> tags."""

    def __init__(self):
        super().__init__()
        self.found = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href") and value is not None:
                self.found.append((tag, name, value))


def resources(text: str) -> list:
    parser = Resources()
    parser.feed(text)
    return parser.found


def test_html_scripts_stylesheets_and_images_are_local(page):
    text = page.read_text()
    found = resources(text)
    assert any(tag == "img" for tag, _, _ in found)  # the figure
    for tag, attr, value in found:
        if tag in ("script", "link"):
            assert not re.match(r"\s*(https?:)?//", value, re.I), (tag, attr, value)
        if tag == "img":
            assert value.startswith("data:image/"), value[:80]  # embedded, so the file stands alone
    assert network_references(text) == []
    assert "cdnjs" not in text and "unpkg" not in text and "MathJax" not in text


def test_network_check_sees_nbconvert_default_html(page):
    """The checks can fail: nbconvert's own HTML loads require.js and MathJax from a CDN."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nbformat.read(page.with_suffix(".ipynb"), 4))
    assert [v for tag, _, v in resources(body) if tag == "script" and v.startswith("https://")]
    assert network_references(body)


def test_formulas_are_mathml(page):
    text = page.read_text()
    assert text.count("<math") >= 10 and 'display="block"' in text
    assert "\ue000" not in text and 'class="math-tex"' not in text
    assert 'id="The-loss-$L$-of-a-sequence"' in text  # as nbconvert names it
    assert "a price of $5 stays text" in text


def test_formula_pandoc_cannot_write_is_kept_as_escaped_tex(capsys):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(
        "Fine $x^2$, odd $\\begin{nosuchenv} <b>y</b> \\end{nosuchenv}$.")])
    body, _ = OfflineHTMLExporter().from_notebook_node(nb)
    assert "<math" in body and "<b>y</b>" not in body and "&lt;b&gt;y&lt;/b&gt;" in body
    assert "formula kept as TeX" in capsys.readouterr().err


def browser():
    return next((p for p in map(shutil.which, BROWSERS) if p), None)


def visible_text(path: Path, tmp_path: Path) -> str:
    """The text of the page at `path` as headless Chromium shows it, offline, after its scripts ran."""
    probe = tmp_path / f"probe-{path.name}"
    probe.write_text(path.read_text().replace("</body>", PROBE + "</body>", 1))
    run = subprocess.run([browser(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
                          probe.resolve().as_uri()], capture_output=True, text=True, timeout=120)
    m = re.search(r'<pre id="visible-text-probe">(.*?)</pre>', run.stdout, flags=re.S)
    assert m, f"Chromium printed no page (exit {run.returncode}): {run.stderr[-2000:]}"
    return html.unescape(m.group(1))


needs_chromium = pytest.mark.skipif(browser() is None, reason="no Chromium installed (apt-get install chromium): "
                                    "the rendered page is not checked in a browser")


@needs_chromium
def test_chromium_offline_shows_no_raw_latex(page, tmp_path):
    text = visible_text(page, tmp_path)
    assert "An output:" in text and "a price of $5 stays text" in text and "Figure 1." in text
    assert not RAW_LATEX.findall(text), RAW_LATEX.findall(text)[:10]


@needs_chromium
def test_chromium_check_sees_raw_latex(tmp_path):
    """The check can fail: a page whose formulas no script typesets shows them raw."""
    page = tmp_path / "raw.html"
    page.write_text("<!DOCTYPE html><html><body><p>$$\\begin{aligned} a &= \\frac{1}{2} \\end{aligned}$$</p>"
                    "<pre class='jp-InputArea-editor'>$\\eta$ in code</pre></body></html>")
    text = visible_text(page, tmp_path)
    assert RAW_LATEX.findall(text) and "in code" not in text


def test_hostile_formulas_stay_text():
    """A formula is text to pandoc: markup or a link in it reaches the page escaped, never as a tag."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(
        "A $</math><script>alert(1)</script>$, an $<img src=x onerror=alert(2)>$, "
        "a $\\href{javascript:alert(3)}{x}$ and $$\\style{color:red}{y} \\unicode{x41}$$.")])
    body, _ = OfflineHTMLExporter().from_notebook_node(nb)
    assert "<script>alert" not in body and "<img src=x" not in body and 'href="javascript' not in body
    assert "&lt;script&gt;alert(1)" in body and "onerror=alert(2)&gt;" in body
