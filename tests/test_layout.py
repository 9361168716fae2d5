"""The code's layout, as the README's map describes it: rnn_core at the bottom, then the package's wings
kernels, training, study and report, each importing only the ones before it, and the command line on top."""
import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "charrnn"
ORDER = ["kernels", "training", "study", "report"]  # a wing may import the wings before it, never after
MAX_LINES = 350  # a module a newcomer reads in one go
MAX_CORE_LINES = 450  # rnn_core.py: the assignment's code, read in one sitting


def modules():
    return sorted(p for p in PACKAGE.rglob("*.py"))


def wing(path: Path) -> str | None:
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else None  # None: the package's top (cli, __main__, __init__)


def own_imports(tree):
    """(module imported, node, at module level) for every import of rnn_core or the package."""
    top = set(map(id, tree.body))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
            if node.level:  # relative imports are not used: every import names its wing
                names = ["relative"]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            if name == "relative" or name.split(".")[0] in ("charrnn", "rnn_core"):
                yield name, node, id(node) in top


def test_rnn_core_is_numpy_only_and_short():
    source = (ROOT / "rnn_core.py").read_text()
    tree = ast.parse(source)
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported <= {"numpy", "itertools", "__future__"}, imported
    assert len(source.splitlines()) <= MAX_CORE_LINES


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_run_down_the_wings_at_module_level(path):
    mine = wing(path)
    for name, node, at_top in own_imports(ast.parse(path.read_text())):
        assert name != "relative", f"line {node.lineno}: a relative import; name the wing"
        assert at_top, f"line {node.lineno}: {name} imported inside a function"
        parts = name.split(".")
        if parts[0] == "rnn_core" or len(parts) == 1:
            continue
        theirs = parts[1]
        if mine is None:  # the command line and the package's own files sit above every wing
            continue
        assert ORDER.index(theirs) <= ORDER.index(mine), f"line {node.lineno}: {mine} imports {name}, a later wing"
        if theirs == "kernels" and mine != "kernels":
            assert name == "charrnn.kernels", f"line {node.lineno}: {name}: the kernels are reached through their seam"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_module_is_short_and_says_its_concern_first(path):
    source = path.read_text()
    assert len(source.splitlines()) <= MAX_LINES
    assert source.startswith('"""') and len(source.splitlines()[0]) > 10, "the first line names the module's concern"


def test_every_wing_lists_its_modules():
    for w in ORDER:
        doc = ast.get_docstring(ast.parse((PACKAGE / w / "__init__.py").read_text()))
        listed = {m[1] for line in doc.splitlines()[1:] if (m := re.match(r"\s*(\w+)\s{2,}\S", line))}
        present = {p.stem for p in (PACKAGE / w).glob("*.py")} - {"__init__"}
        assert listed == present, w


def test_naming_a_run_compiles_nothing():
    """A run's cache key resolves the backend "auto" by whether numba imports, never by compiling a kernel
    (a fresh process: the kernels' compile cache stays empty after naming runs of every kind)."""
    code = ("import sys; sys.path.insert(0, 'tests'); from conftest import TEXT\n"
            "from charrnn import study, training\nfrom charrnn.kernels import ops\n"
            "corpus = training.corpus_from_text(TEXT, seq_length=10)\n"
            "for c in (training.Config(), training.Config(batch_size=8), training.Config(holdout=0.1)):\n"
            "    study.run_key(corpus, c)\n"
            "print(sorted(ops._COMPILED))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
