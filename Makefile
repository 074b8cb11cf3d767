# compression-bench. Every target that needs the virtual environment or data depends on it, so each
# command works alone on a fresh clone.
PYTHON    ?= python3
VENV      := .venv
BIN       := $(VENV)/bin
RESULTS   ?= results

METHOD    ?= magnitude
DATASET   ?= fashion-mnist
MODEL     ?= lenet300
PROTOCOL  ?= fair
# Unset, these come from the protocol (bench/protocol.py); set, they override it (and change its hash).
RATIOS    ?=
SEEDS     ?=
EPOCHS    ?=
FINETUNE_EPOCHS ?=
FINETUNE_LR ?=
# seed0 (fair's: tune on seed 0, run the choice on the others) or every-seed (the exhaustive check)
TUNING    ?=
# how many of each method's own settings candidates are tuned (1: the defaults only)
SETTINGS  ?=
PARAMS    ?=
# compare only: a subset of the methods, and (with it) the runs to compare them against (a runs.csv, or reference)
METHODS   ?=
AGAINST   ?=
# Plugin modules that register methods, models or datasets (space-separated), and model builder options.
PLUGINS   ?=
MODEL_OPTIONS ?=
TRIALS    ?=
# Two one-thread workers train small models faster than one two-thread process: 2 where the cores allow it.
WORKERS   ?= $(shell $(PYTHON) -c "import os; print(min(2, len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 1))" 2>/dev/null || echo 1)
STORAGE   ?=
LOG_MODELS ?= 1
# 1: go past the preflight's bounds (more than 10 seeds, more workers than CPU cores)
ALLOW_LARGE ?=
PAPER     ?= coreset
SCALE     ?= cpu
UI_PORT   ?= 5000
DASHBOARD_PORT ?= 8080
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help setup data bench compare test test-e2e screenshots ui dashboard figures reproduce benchmark test-scale clean

help:  ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  make %-12s %s\n", $$1, $$2}'
	@echo "  variables: METHOD=$(METHOD) DATASET=$(DATASET) MODEL=$(MODEL) PROTOCOL=$(PROTOCOL) (fair|quick) WORKERS=$(WORKERS) PARAMS='k=v ...'"
	@echo "  overrides of the protocol (unset: the protocol's): RATIOS=2,4,... SEEDS=n EPOCHS=n FINETUNE_EPOCHS=n FINETUNE_LR=a,b TUNING=seed0|every-seed SETTINGS=n"
	@echo "  LOG_MODELS=0: no MLflow logged models (a smaller store for huge sweeps); ALLOW_LARGE=1: past the seed/worker bounds"
	@echo "  PLUGINS='module ...': import plugin modules first (their methods, models, datasets); MODEL_OPTIONS='k=v ...'"

setup: $(VENV)/.installed  ## create .venv with the pinned dependencies (CPU torch 2.13.0)

# torch is installed in the same pip call as lightning, or pip picks a newer CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

data: setup  ## fetch DATASET (offline-first: local copy, Debian package, then the public mirror)
	$(BIN)/python -m bench fetch $(DATASET) $(foreach p,$(PLUGINS),--plugin $(p))

bench: setup data  ## Optuna study of METHOD under PROTOCOL: grid over its ratios x lr candidates (or TRIALS tpe trials), with its controls
	$(BIN)/python -m bench bench --method $(METHOD) --dataset $(DATASET) --model $(MODEL) --protocol $(PROTOCOL) \
		--workers $(WORKERS) $(if $(RATIOS),--ratios $(RATIOS)) $(if $(SEEDS),--seeds $(SEEDS)) \
		$(if $(EPOCHS),--epochs $(EPOCHS)) $(if $(FINETUNE_EPOCHS),--finetune-epochs $(FINETUNE_EPOCHS)) \
		$(if $(FINETUNE_LR),--finetune-lr $(FINETUNE_LR)) $(if $(TUNING),--tuning $(TUNING)) $(if $(SETTINGS),--settings $(SETTINGS)) \
		$(if $(TRIALS),--trials $(TRIALS)) $(if $(STORAGE),--storage $(STORAGE)) $(foreach p,$(PARAMS),--param $(p)) \
		$(foreach p,$(PLUGINS),--plugin $(p)) $(foreach o,$(MODEL_OPTIONS),--model-option $(o)) \
		$(if $(filter 0,$(LOG_MODELS)),--no-log-models) $(if $(filter 1,$(ALLOW_LARGE)),--allow-large)

compare: setup data  ## every method and control under PROTOCOL on DATASET/MODEL (SEEDS, RATIOS, FINETUNE_LR, WORKERS), then its verdict
	$(BIN)/python -m bench compare --dataset $(DATASET) --model $(MODEL) --protocol $(PROTOCOL) --workers $(WORKERS) \
		$(if $(SEEDS),--seeds $(SEEDS)) $(if $(RATIOS),--ratios $(RATIOS)) $(if $(STORAGE),--storage $(STORAGE)) \
		$(if $(FINETUNE_LR),--finetune-lr $(FINETUNE_LR)) $(if $(TUNING),--tuning $(TUNING)) $(if $(SETTINGS),--settings $(SETTINGS)) \
		$(if $(filter 0,$(LOG_MODELS)),--no-log-models) \
		$(foreach p,$(PLUGINS),--plugin $(p)) $(if $(filter 1,$(ALLOW_LARGE)),--allow-large) \
		$(if $(METHODS),--methods $(METHODS)) $(if $(AGAINST),--against $(AGAINST))

test: setup  ## run the test suite (fetches Fashion-MNIST for the data tests)
	$(BIN)/python -m bench fetch fashion-mnist
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-e2e: setup  ## install Debian's chromium, then run the browser test of the MLflow UI and Optuna dashboard
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)
	$(BIN)/python -m pytest -q -m e2e -rs $(PYTEST_ARGS)

screenshots: setup  ## the README's MLflow UI and optuna-dashboard screenshots, clicked through with Playwright, into results/reference/ui/
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)
	$(BIN)/pip install -q -e '.[dev,e2e]'
	$(BIN)/python tests/ui_screenshots.py --out results/reference/ui

ui: setup  ## MLflow UI on 127.0.0.1:UI_PORT over results/mlflow.db; prints each experiment's runs-table link
	@mkdir -p $(RESULTS)
	@echo "MLflow UI on http://127.0.0.1:$(UI_PORT) (Ctrl-C stops it). Each experiment's runs table:"
	@COMPRESSION_BENCH_RESULTS=$(abspath $(RESULTS)) $(BIN)/python -m bench links --url http://127.0.0.1:$(UI_PORT)
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow server --host 127.0.0.1 --port $(UI_PORT) --workers 1 \
		--backend-store-uri sqlite:///$(abspath $(RESULTS))/mlflow.db --default-artifact-root $(abspath $(RESULTS))/artifacts

test-scale: setup  ## install Debian's postgresql if missing, then run the multi-machine tests (PostgreSQL + MLflow server)
	bash .ci/test-scale $(PYTEST_ARGS)

dashboard: setup  ## optuna-dashboard on 127.0.0.1:DASHBOARD_PORT over results/optuna.db (or STORAGE)
	@mkdir -p $(RESULTS)
	@echo "Optuna dashboard: http://127.0.0.1:$(DASHBOARD_PORT)/  (Ctrl-C stops it)"
	$(BIN)/optuna-dashboard --host 127.0.0.1 --port $(DASHBOARD_PORT) --artifact-dir $(abspath $(RESULTS))/optuna-artifacts \
		$(or $(STORAGE),sqlite:///$(abspath $(RESULTS))/optuna.db)

figures: setup  ## regenerate every figure and table under results/figures from the tracked runs
	$(BIN)/python -m bench figures

reproduce: setup  ## run PAPER's figure under its own recipe (coreset, magnitude, sap, lq, surp, lma, multihash; SCALE=cpu or paper)
	$(BIN)/python -m bench fetch fashion-mnist
	$(BIN)/python -m bench reproduce $(PAPER) --scale $(SCALE)

benchmark: setup data  ## the suite's own speed: harness overhead, compress cost, deployed speed, per-trial overhead, memory, tracking (QUICK=1: short)
	$(BIN)/python -m bench.benchmark $(if $(QUICK),--quick) --out $(RESULTS)/benchmark

clean:  ## remove results/ (stores, caches, figures) and the virtual environment
	rm -rf $(RESULTS)/mlflow.db $(RESULTS)/optuna.db $(RESULTS)/artifacts $(RESULTS)/optuna-artifacts $(RESULTS)/baselines \
		$(RESULTS)/figures $(VENV)
