# make train / make eval / make test set everything up on first use (a .venv with the package and its dev extras).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
ARGS ?=
PORT ?= 6006
DOCS_PORT ?= 8000

.PHONY: help install train eval convert bench bench-compare tensorboard mlflow docs test test-engines test-full lint format clean

help:                     ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):[^#]*## /\1\t/' | awk -F'\t' '{printf "  make %-14s %s\n", $$1, $$2}'

install: $(VENV)/.installed   ## .venv with the package (editable) and its dev extras; idempotent

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

train: install            ## the default experiment (make train ARGS="pipeline=queue")
	$(PY) -m runner $(ARGS)

eval: install             ## evaluate the latest run's latest checkpoint (or RUN=outputs/DATE/TIME)
	@run="$${RUN:-$$(ls -td outputs/*/*/checkpoints 2>/dev/null | head -n 1 | xargs -r dirname)}"; \
	if [ -z "$$run" ]; then echo "no trained run under outputs/; run 'make train' first" >&2; exit 2; fi; \
	$(PY) -m runner mode=eval run_dir=$$run $(ARGS)

bench: install            ## the input methods against the model-only bound, on the CIFAR-10 model (shapes data)
	$(PY) -m runner mode=bench dataset=shapes $(ARGS)

bench-compare: install    ## runner vs Keras fit (fp32, bf16), a real run vs the bench: ratios with 95% intervals (minutes)
	$(PY) -m runner.perf.compare $(ARGS)

convert: install          ## write the dataset's TFRecords (make convert ARGS="dataset=mnist")
	$(PY) -m runner mode=convert $(ARGS)

tensorboard: install      ## TensorBoard on the newest run or sweep (RUN=DIR picks another, PORT=6006)
	$(PY) -m runner.viewer $(RUN) --port $(PORT)

# make mlflow: the runs tracked from this folder (tracking=mlflow's default store), or STORE=URI; PORT=5000. Without
# MLflow's job runner (its GenAI jobs: seven more processes, 1.7 GB, that runs never use).
STORE ?= sqlite:///$(CURDIR)/mlflow.db
mlflow: install           ## the MLflow UI on 127.0.0.1 over the runs tracked here (STORE=sqlite:///PATH.db, PORT=5000)
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(PY) -m mlflow ui --backend-store-uri '$(STORE)' --host 127.0.0.1 --workers 1 \
		--port $(if $(filter command line environment,$(origin PORT)),$(PORT),5000)

docs: install             ## the documentation site on 127.0.0.1 (DOCS_PORT=8000), rebuilt as the pages change
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs serve --dev-addr 127.0.0.1:$(DOCS_PORT)

test: install             ## the fast suite (slow tests skipped; 3 workers on 2 cores: some tests wait on subprocesses)
	$(PY) -m pytest -m "not slow" -n 3 --dist loadgroup -q

test-engines: install     ## sweeps on real engines: a one-node SLURM on 127.0.0.1 (root, Debian's slurm packages), a local Ray head
	$(PY) -m pytest -m engines -n 2 --dist loadgroup -q

test-full: install        ## everything, slow tests included
	$(PY) -m pytest -n 2 --dist loadgroup -q

lint: install             ## ruff (E, F, I, B, UP) on everything, mypy on config/, core/ and engine/
	$(PY) -m ruff check .
	$(PY) -m mypy

format: install           ## fix what ruff can (import order, pyupgrade)
	$(PY) -m ruff check --fix .

clean:
	rm -rf outputs multirun .pytest_cache build site *.egg-info
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +
