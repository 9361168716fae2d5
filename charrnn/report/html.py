"""The executed notebook as one HTML file that works offline: nbconvert's lab template, with every
formula written as MathML by the pandoc that pypandoc-binary bundles (browsers draw MathML
themselves: no MathJax, no network), and no script from the network (require.js, MathJax and
mermaid's loader are left out). nbconvert embeds the output images as data: URIs, and
`embed_images` does the same for images in Markdown cells, so the file stands alone.

A formula pandoc cannot write as MathML (rare: texmath reads most of LaTeX's maths) is kept as
its TeX source in <code> and named on stderr.
"""
from __future__ import annotations

import html
import json
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pypandoc
from jinja2 import DictLoader, pass_context
from nbconvert import HTMLExporter
from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath

# Formulas are held as private-use placeholders while nbconvert renders, then written as MathML. In a
# tag they are URL-encoded (a heading's id is made from its text) or not (an alt text).
PLACEHOLDER = re.compile("(?:\ue000|%EE%80%80)(\\d+)(?:\ue001|%EE%80%81)")
TAG_OR_PLACEHOLDER = re.compile("<[^<>]*>|\ue000(\\d+)\ue001")
ID_SAFE = "?/:@!$&'()*+,;="  # what nbconvert's heading ids keep unencoded

# nbconvert's lab template without the blocks that load scripts from a CDN; MathML's style instead.
TEMPLATE = r"""{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block html_head_js_mathjax -%}
<style type="text/css">
math { font-family: "STIX Two Math", "Latin Modern Math", "Cambria Math", "DejaVu Math TeX Gyre", math; font-size: 1.1em; }
math[display="block"] { display: block math; margin: 0.6em 0; overflow-x: auto; overflow-y: hidden; }
mtd[columnalign="right"] { text-align: right; }
mtd[columnalign="left"] { text-align: left; }
mtd { padding: 0.2em 0; }
math[display="block"] mtd { math-style: normal; }  /* aligned is in display style, as in LaTeX */
code.math-tex { white-space: pre-wrap; }
</style>
{%- endblock html_head_js_mathjax -%}
"""


class MathRenderer(IPythonRenderer):
    """nbconvert's Markdown renderer, but each formula becomes a placeholder and is kept in `formulas`
    as (TeX, display)."""

    def __init__(self, formulas: list, **kw):
        super().__init__(**kw)
        self.formulas = formulas

    def _keep(self, tex: str, display: bool) -> str:
        self.formulas.append((tex, display))
        return f"\ue000{len(self.formulas) - 1}\ue001"

    def block_math(self, body: str) -> str:
        return self._keep(body, True)

    def inline_math(self, body: str) -> str:
        return self._keep(body, False)

    def latex_environment(self, name: str, body: str) -> str:
        return self._keep(f"\\begin{{{name}}}{body}\\end{{{name}}}", True)


class OfflineHTMLExporter(HTMLExporter):
    """HTMLExporter whose output loads nothing from the network and whose formulas are MathML."""

    def __init__(self, **kw):
        kw.setdefault("extra_loaders", [DictLoader({"offline.html.j2": TEMPLATE})])
        super().__init__(template_name="lab", template_file="offline.html.j2", embed_images=True, **kw)
        self.formulas: list = []

    @pass_context
    def markdown2html(self, context, source):
        """As HTMLExporter.markdown2html, with MathRenderer."""
        cell = context.get("cell", {})
        renderer = MathRenderer(
            self.formulas, escape=False, attachments=cell.get("attachments", {}), embed_images=self.embed_images,
            path=context.get("resources", {}).get("metadata", {}).get("path", ""),
            anchor_link_text=self.anchor_link_text, exclude_anchor_links=self.exclude_anchor_links,
            **self.lexer_options)
        return MarkdownWithMath(renderer=renderer).render(source)

    def from_notebook_node(self, nb, resources=None, **kw):
        self.formulas = []
        body, resources = super().from_notebook_node(nb, resources, **kw)
        return fill_formulas(body, self.formulas), resources


def mathml(formulas: list) -> list:
    """[(TeX, display)] -> the HTML of each formula: MathML from one pandoc run (its JSON reader, so
    no Markdown rule can split or swallow a formula); the escaped TeX in <code> where pandoc could not."""
    if not formulas:
        return []
    pandoc = pypandoc.get_pandoc_path()
    empty = subprocess.run([pandoc, "-f", "markdown", "-t", "json"], input="", capture_output=True, text=True,
                           check=True)
    doc = {"pandoc-api-version": json.loads(empty.stdout)["pandoc-api-version"], "meta": {}, "blocks": [
        {"t": "Div", "c": [[f"f{i}", [], []], [{"t": "Plain", "c": [
            {"t": "Math", "c": [{"t": "DisplayMath" if display else "InlineMath"}, tex.strip()]}]}]]}
        for i, (tex, display) in enumerate(formulas)]}
    run = subprocess.run([pandoc, "-f", "json", "-t", "html", "--mathml", "--wrap=none"], input=json.dumps(doc),
                         capture_output=True, text=True, check=True)
    found = dict(re.findall(r'<div id="f(\d+)">\s*(.*?)\s*</div>', run.stdout, flags=re.S))
    out = []
    for i, (tex, display) in enumerate(formulas):
        written = found.get(str(i), "")
        if "<math" not in written:
            print(f"render: formula kept as TeX (pandoc could not write it as MathML): {tex.strip()[:80]}",
                  file=sys.stderr)
            written = f'<code class="math-tex">{html.escape(tex.strip())}</code>'
        out.append(written)
    return out


def fill_formulas(body: str, formulas: list) -> str:
    """Put each formula's MathML where its placeholder stands in text; inside a tag, its TeX between
    dollars as nbconvert writes it there (a heading's id keeps the value nbconvert gives it)."""
    written = mathml(formulas)

    def source(p) -> str:
        tex, display = formulas[int(p.group(1))]
        tex = f"{'$$' if display else '$'}{tex}{'$$' if display else '$'}"
        return html.escape(quote(tex.replace(" ", "-"), safe=ID_SAFE) if p.group(0).startswith("%") else tex)

    def fill(m):
        if m.group(1) is not None:
            return written[int(m.group(1))]
        return PLACEHOLDER.sub(source, m.group(0))

    return TAG_OR_PLACEHOLDER.sub(fill, body)


def write_html(nb, path: Path) -> Path:
    """Write the notebook `nb` as an offline HTML file at `path`."""
    body, _ = OfflineHTMLExporter().from_notebook_node(nb)
    path.write_text(body)
    return path


NETWORK = re.compile(r"""<(script|link|img|iframe)\b[^>]*?\b(src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.I)


def network_references(text: str) -> list:
    """The tags of an HTML page that would fetch something from the network (src or href of a script,
    link, img or iframe that is http(s):// or protocol-relative), and script bodies that import from it."""
    found = [m.group(0) for m in NETWORK.finditer(text)]
    for script in re.findall(r"<script\b[^>]*>(.*?)</script>", text, flags=re.S | re.I):
        found += re.findall(r"""(?:import\s*\(|from\s+|src\s*=\s*)["'](?:https?:)?//[^"']*""", script)
    return found
