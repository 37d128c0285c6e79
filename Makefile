# The front door: `make` lists every target. Targets that need Python depend on `setup`, so any
# of them works on a fresh clone. Settings (override on the command line, e.g. EXPERIMENT=full):
# experiment file in training/experiments/ (train-local: smoke, train-cloud: small)
EXPERIMENT ?=
# hyperparameter overrides, "key=value key=value"
HP ?=
# SageMaker instance type (default from the experiment: ml.p2.xlarge, the seed's K80, deprecated
# by AWS); "auto": the cheapest GPU type your account has quota for
INSTANCE ?=
# instances for one multi-worker job
INSTANCE_COUNT ?=
# Pulumi stack; its outputs land in .infra/$(STACK).json
STACK ?= dev
# Kaggle train.zip, or the folder it unzips to (make data)
DATA ?=
# where make data / make data-sample write the splits
SPLITS ?= data/splits
# training job name (make results)
JOB ?=
# 1: submit and return at once (make train-cloud)
DETACH ?=
# 1: a new checkpoint folder, so a finished experiment trains again from the start (train-cloud)
FRESH ?=
# local VGG16 no-top .h5 to ship through the weights channel
WEIGHTS ?=
# train-local: "docker" runs the real SageMaker TF image through the SDK's local-container mode
MODE ?=

PYTHON      ?= $(shell command -v python3.11 || command -v python3)
VENV        := .venv
COMPAT_VENV := .venv-compat
PY          := $(VENV)/bin/python
COMPAT_PY   := $(COMPAT_VENV)/bin/python
PIP_FLAGS   := -qq --disable-pip-version-check  # errors only: this machine's pip config warns a lot
export TF_CPP_MIN_LOG_LEVEL ?= 2

.DEFAULT_GOAL := help
.PHONY: help setup setup-compat lint format test test-fast data data-sample data-upload \
        train-local train-cloud results report infra-preview infra-up infra-down bench cost clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# --- environments ---------------------------------------------------------------------------
$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(PIP_FLAGS) --upgrade pip
	$(PY) -m pip install $(PIP_FLAGS) -r requirements.txt -r requirements-dev.txt
	touch $@

$(COMPAT_VENV)/.installed: requirements-compat.txt
	test -x $(COMPAT_PY) || $(PYTHON) -m venv $(COMPAT_VENV)
	$(COMPAT_PY) -m pip install $(PIP_FLAGS) --upgrade pip
	$(COMPAT_PY) -m pip install $(PIP_FLAGS) -r requirements-compat.txt
	touch $@

setup: $(VENV)/.installed ## create .venv from the pinned requirements (only when they change)

setup-compat: $(COMPAT_VENV)/.installed ## create .venv-compat (TF 2.12/Keras 2) for the job's tests

# --- quality ----------------------------------------------------------------------------------
lint: setup ## ruff lint + format check (the job folder is checked against Python 3.9)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup ## apply ruff's formatting and safe fixes
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# pytest exits 5 when it collects nothing: say so and fail rather than pass in silence.
define run_pytest
	$(1) -m pytest $(2); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests under '$(2)'" >&2; exit 1; fi; \
	exit $$rc
endef

test: setup setup-compat lint ## lint, the whole suite (TF 2.21) and the job's tests again under TF 2.12
	$(call run_pytest,$(PY),tests)
	$(call run_pytest,$(COMPAT_PY),tests/job)

test-fast: setup ## the suite without the slow (training) tests, main environment only
	$(call run_pytest,$(PY),tests -m "not slow")

# --- data -------------------------------------------------------------------------------------
data: setup ## split Kaggle's train.zip into the seed's splits: make data DATA=path/to/train.zip
	$(PY) -m training.data.prepare $(if $(DATA),"$(DATA)") --out $(SPLITS)

data-sample: setup ## generate the built-in synthetic sample set and split it like the seed
	$(PY) -m training.data.sample --out $(SPLITS)

data-upload: setup ## stage the splits to the project bucket (resumable, deduplicated)
	$(PY) -m training.data.upload --splits $(SPLITS) --stack $(STACK)

# --- training ---------------------------------------------------------------------------------
LAUNCH_ARGS = $(if $(EXPERIMENT),--experiment $(EXPERIMENT)) $(if $(HP),--hp $(HP)) \
              $(if $(INSTANCE),--instance $(INSTANCE)) \
              $(if $(INSTANCE_COUNT),--instance-count $(INSTANCE_COUNT)) \
              $(if $(WEIGHTS),--weights-file $(WEIGHTS)) --splits $(SPLITS) --stack $(STACK)

train-local: setup ## run an experiment on this machine, SageMaker contract emulated (default: smoke)
	$(PY) -m training.launch local $(LAUNCH_ARGS) $(if $(MODE),--mode $(MODE))

train-cloud: setup ## submit an experiment to SageMaker, follow it, fetch results (default: small)
	$(PY) -m training.launch cloud $(LAUNCH_ARGS) $(if $(DETACH),--detach) $(if $(FRESH),--fresh)

results: setup ## fetch a SageMaker job's results and write its report: make results JOB=<name>
	$(PY) -m training.launch results $(if $(JOB),--job $(JOB)) --stack $(STACK)

report: setup ## one table comparing every run under runs/ with the seed
	$(PY) -m training.report.compare runs

cost: setup ## what an experiment costs: make cost EXPERIMENT=small INSTANCE=ml.p2.xlarge
	$(PY) -m training.launch cost $(if $(EXPERIMENT),--experiment $(EXPERIMENT)) \
	    $(if $(INSTANCE),--instance $(INSTANCE)) $(if $(INSTANCE_COUNT),--instance-count $(INSTANCE_COUNT))

bench: setup ## measure pipeline and phase speed here; writes runs/bench/bench.{json,md}
	$(PY) -m training.bench --out runs/bench

# --- infrastructure (needs the pulumi CLI) ---------------------------------------------------
infra-preview: setup ## pulumi preview of the bucket, role and launcher policy
	$(PY) -m infra.cli preview --stack $(STACK)

infra-up: setup ## pulumi up, then write the outputs to .infra/<stack>.json for the launcher
	$(PY) -m infra.cli up --stack $(STACK)

infra-down: setup ## pulumi destroy (the bucket must be emptied first; the command says how)
	$(PY) -m infra.cli down --stack $(STACK)

clean: ## remove environments, caches and local runs (data/ is kept)
	rm -rf $(VENV) $(COMPAT_VENV) .pytest_cache .ruff_cache runs
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
