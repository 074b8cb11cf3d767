# compression-bench. Every target that needs the virtual environment or data depends on it, so each
# command works alone on a fresh clone.
PYTHON    ?= python3
VENV      := .venv
BIN       := $(VENV)/bin
RESULTS   ?= results

METHOD    ?= magnitude
DATASET   ?= fashion-mnist
MODEL     ?= lenet300
RATIOS    ?= 2,4,8,16,32
SEEDS     ?= 1
EPOCHS    ?= 10
FINETUNE_EPOCHS ?= 2
PARAMS    ?=
UI_PORT   ?= 5000
DASHBOARD_PORT ?= 8080
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help setup data bench test ui dashboard clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  make %-12s %s\n", $$1, $$2}'
	@echo "  variables: METHOD=$(METHOD) DATASET=$(DATASET) MODEL=$(MODEL) RATIOS=$(RATIOS) SEEDS=$(SEEDS) EPOCHS=$(EPOCHS) FINETUNE_EPOCHS=$(FINETUNE_EPOCHS) PARAMS='k=v ...'"

setup: $(VENV)/.installed  ## create .venv with the pinned dependencies (CPU torch 2.13.0)

# torch is installed in the same pip call as lightning, or pip picks a newer CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

data: setup  ## fetch DATASET (offline-first: local copy, Debian package, then the public mirror)
	$(BIN)/python -m bench fetch $(DATASET)

bench: setup data  ## compress METHOD at RATIOS with SEEDS seeds, fine-tune, measure, track in MLflow
	$(BIN)/python -m bench bench --method $(METHOD) --dataset $(DATASET) --model $(MODEL) --ratios $(RATIOS) \
		--seeds $(SEEDS) --epochs $(EPOCHS) --finetune-epochs $(FINETUNE_EPOCHS) $(foreach p,$(PARAMS),--param $(p))

test: setup  ## run the test suite (fetches Fashion-MNIST for the data tests)
	$(BIN)/python -m bench fetch fashion-mnist
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

ui: setup  ## MLflow UI on 127.0.0.1:UI_PORT over results/mlflow.db (lean: one worker, no job runner)
	@mkdir -p $(RESULTS)
	@echo "MLflow UI: http://127.0.0.1:$(UI_PORT)/#/experiments  (Ctrl-C stops it)"
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow server --host 127.0.0.1 --port $(UI_PORT) --workers 1 \
		--backend-store-uri sqlite:///$(abspath $(RESULTS))/mlflow.db --default-artifact-root $(abspath $(RESULTS))/artifacts

clean:  ## remove results/ (stores, caches, figures) and the virtual environment
	rm -rf $(RESULTS)/mlflow.db $(RESULTS)/optuna.db $(RESULTS)/artifacts $(RESULTS)/baselines $(RESULTS)/figures $(VENV)
