"""The notebook: committed clean, and a quick run renders to HTML (and to PDF where the tools are)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NB = ROOT / "assignment4.ipynb"
JUPYTER = [sys.executable, "-m", "jupyter"]
SECTIONS = ["Set-up and data", "Part I: the assignment", "The model", "Gradient check", "Training",
            "The best model", "Discussion", "Part II: beyond the assignment", "Sampling controls",
            "Held-out evaluation", "Kneser-Ney n-grams", "Optimisers", "Training order", "Mini-batches",
            "Capacity", "Seed-to-seed spread", "Inside the network", "Discussion of Part II"]
FIGURES = ["smooth_loss_main_run", "training_samples_main_run", "smooth_loss_long_run", "sampling_temperature_top_p",
           "validation_reference_run", "optimisers_adagrad_adam", "training_orders", "minibatches", "capacity",
           "seed_spread", "hidden_units_text", "next_character_candidates"]


def test_notebook_is_committed_without_outputs():
    nb = json.loads(NB.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    assert "parameters" in code[0]["metadata"].get("tags", [])
    text = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    headings = [line.lstrip("#").strip() for line in text.split("\n") if line.startswith("#")]
    for section in SECTIONS:
        assert any(h.startswith(section) or section in h for h in headings), section


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    env = dict(os.environ, RNN_QUICK="1", RNN_PROGRESS="0", RNN_RUNS=str(out / "runs"), RNN_SEEDS="3",
               RNN_FIGURES=str(out / "figures"))
    run = subprocess.run(JUPYTER + ["nbconvert", "--to", "notebook", "--execute", "--output-dir", str(out),
                                    "--output", "executed.ipynb", str(NB)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    html = subprocess.run(JUPYTER + ["nbconvert", "--to", "html", str(out / "executed.ipynb")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert html.returncode == 0, html.stderr[-3000:]
    return out


def test_quick_report_executes_and_embeds_everything(rendered):
    html = (rendered / "executed.html").read_text()
    assert "max rel. error" in html and "Verdict: pass" in html
    assert html.count("data:image/png;base64") >= len(FIGURES)
    for section in SECTIONS:
        assert section in html
    executed = json.loads((rendered / "executed.ipynb").read_text())
    outputs = [o for c in executed["cells"] if c["cell_type"] == "code" for o in c["outputs"]]
    assert not [o for o in outputs if o["output_type"] == "error"]
    assert not [o for o in outputs if o.get("name") == "stderr" and "Traceback" in "".join(o["text"])]
    assert "n-gram order" in html and "Best RNN run of this part" in html
    for name in FIGURES:
        for ext in ("png", "pdf"):
            assert (rendered / "figures" / f"{name}.{ext}").stat().st_size > 1000


def test_quick_report_renders_to_pdf(rendered):
    tools = [shutil.which(t) for t in ("pandoc", "xelatex", "pdftotext")]
    if not all(tools):
        if os.environ.get("CI"):
            pytest.fail("CI must have the PDF tools: .ci/run installs them with `make pdf-deps`")
        pytest.skip("pandoc/xelatex/pdftotext missing: `make pdf-deps` installs them")
    pdf = subprocess.run(JUPYTER + ["nbconvert", "--to", "pdf", "--no-input", str(rendered / "executed.ipynb"),
                                    "--TagRemovePreprocessor.enabled=True",
                                    "--TagRemovePreprocessor.remove_cell_tags=[\"title\"]"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert pdf.returncode == 0, pdf.stderr[-3000:]
    text = subprocess.run(["pdftotext", str(rendered / "executed.pdf"), "-"], capture_output=True, text=True).stdout
    for section in SECTIONS:
        assert section in text, section
    assert "A character-level vanilla RNN" in text  # the title, from the notebook metadata
