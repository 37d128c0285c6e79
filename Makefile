# The front door: `make` lists every target. Targets that need Python depend on `setup`, so any
# of them works on a fresh clone. Settings (override on the command line, e.g. EXPERIMENT=full):
# experiment file in training/experiments/ (train-local: smoke, train-cloud: small)
EXPERIMENT ?=
# hyperparameter overrides, "key=value key=value"
HP ?=
# SageMaker instance type (default: the experiment's, ml.p2.xlarge); auto: cheapest GPU with quota
INSTANCE ?=
# instances for one multi-worker job
INSTANCE_COUNT ?=
# Pulumi stack; its outputs land in .infra/$(STACK).json
STACK ?= dev
# Kaggle train.zip, or the folder it unzips to (make data)
DATA ?=
# where make data / make data-sample write the splits
SPLITS ?= data/splits
# where run folders go (runs/<job>); the MLflow store stays runs/mlflow.db
RUNS ?= runs
# training job name (make results)
JOB ?=
# make tune: training jobs in all (default 10; make rehearse TUNE=1: 3)
MAX_JOBS ?=
# make tune: training jobs running at once, each needs quota for one instance (default 2)
PARALLEL ?=
# train-cloud, tune: a job's maximum runtime in minutes (default: the experiment's max_runtime_minutes)
MAX_RUNTIME_MINUTES ?=
# train-cloud, tune, results, tune-results: how long following rides out a lost connection (default 30)
RECONNECT_MINUTES ?=
# train-cloud, tune, results, tune-results: seconds between polls (default 15; a tuning job 30)
POLL_SECONDS ?=
# tuning job name (make tune-results)
TUNING_JOB ?=
# make predict: a run folder (runs/<job>; make report lists them)
RUN ?=
# make predict: a folder, one image, a zip, or kaggle (test.zip, downloaded with your Kaggle token)
IMAGES ?=
# make predict: the submission file (default: <run>/predictions.csv, or predictions-<n>.csv)
OUT ?=
# make predict: keep each P(dog) inside [CLIP, 1-CLIP] (log loss; e.g. 0.005)
CLIP ?=
# make track: 1 also logs each model to MLflow and registers it in the Model Registry
TRACK_MODEL ?=
# make ui: the port of the MLflow UI on 127.0.0.1 (default 5000)
UI_PORT ?=
# 1: submit and return at once (make train-cloud)
DETACH ?=
# 1: a new checkpoint folder, so a finished experiment trains again from the start (train-cloud)
FRESH ?=
# make rehearse: 1 reclaims a spot instance once a fine-tuning epoch is in S3; early: before it is
INTERRUPT ?=
# 1: make rehearse runs make tune (MAX_JOBS, PARALLEL) instead of make train-cloud
TUNE ?=
# make rehearse: a sequence of commands (run, detach, max-runtime, tune-detach, ctrl-c) or all
SCENARIO ?=
# make rehearse: "server" records in an MLflow server on 127.0.0.1, its artifacts in the stand-in's S3
TRACK ?=
# local VGG16 no-top .h5 to ship through the weights channel
WEIGHTS ?=
# train-local: "docker" runs the real SageMaker TF image through the SDK's local-container mode
MODE ?=
# train-local: 1 keeps a finished run's checkpoints under runs/<job>/opt_ml (removed otherwise)
KEEP_CHECKPOINTS ?=

# 1: TensorFlow's CUDA build in .venv (Linux x86_64); default: 1 where nvidia-smi answers on Linux
GPU ?= $(shell [ "$$(uname -s)" = Linux ] && nvidia-smi -L >/dev/null 2>&1 && echo 1)

PYTHON      ?= $(shell command -v python3.11 || command -v python3)
VENV        := .venv
COMPAT_VENV := .venv-compat
PY          := $(VENV)/bin/python
COMPAT_PY   := $(COMPAT_VENV)/bin/python
# Python for .venv: any TensorFlow 2.21 supports; uv finds (or installs) one
MAIN_PYTHON ?= >=3.11
# Python for .venv-compat: TF 2.12/2.13 support none newer than 3.11
COMPAT_PYTHON ?= 3.11
MAIN_LOCK   := $(if $(filter 1,$(GPU)),requirements-gpu.lock,requirements.lock)
COMPAT_LOCK := requirements-compat.lock
# uv creates the environments from the locks in seconds; it is bootstrapped here, pinned, so a
# fresh machine needs nothing but Python.
UV_VERSION  := 0.13.9
UV          := .tools/uv/bin/uv
UV_COMPILE  = $(UV) pip compile --quiet --universal --python-version 3.11
PIP_FLAGS   := -qq --disable-pip-version-check  # errors only: this machine's pip config warns a lot
export TF_CPP_MIN_LOG_LEVEL ?= 2
export UV_CACHE_DIR ?= $(HOME)/.cache/uv

.DEFAULT_GOAL := help
.PHONY: help setup setup-compat lock check-platforms lint format test test-fast check data data-sample \
        data-upload train-local train-cloud rehearse standin-up standin-down results tune tune-results \
        predict report track ui \
        infra-preview \
        infra-up infra-down bench cost clean clean-runs

help: ## list the targets and the settings they take
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo
	@echo "settings (make <target> NAME=value):"
	@awk '/^# / {doc = substr($$0, 3)} /^[A-Z_]+ \?=/ {if (doc != "") printf "  \033[33m%-16s\033[0m %s\n", $$1, doc; doc = ""} !/^# / {doc = ""}' $(MAKEFILE_LIST)

# --- environments ---------------------------------------------------------------------------
$(UV):
	$(PYTHON) -m venv .tools/uv
	.tools/uv/bin/python -m pip install $(PIP_FLAGS) uv==$(UV_VERSION)

# The stamp names the lock it came from, so GPU=1 and back re-syncs. On Linux AWS's container
# toolkits go in beside the lock, without their dependencies (see requirements-standin.txt).
# Bytecode is compiled at install: without it every process compiles what it imports (TensorFlow
# alone: 12 s instead of 6 s on 2 cores), and a PYTHONDONTWRITEBYTECODE shell never keeps it.
$(VENV)/.synced-$(MAIN_LOCK): $(MAIN_LOCK) requirements-standin.txt training/job/pyproject.toml | $(UV)
	@test -x $(PY) || $(UV) venv --quiet --seed --python "$(MAIN_PYTHON)" $(VENV) || { echo "error: .venv needs \
	Python $(MAIN_PYTHON): install one (python.org, brew, apt) or run \`$(UV) python install 3.11\`" >&2; exit 1; }
	$(UV) pip sync --quiet --compile-bytecode --python $(PY) $(MAIN_LOCK)
	$(UV) pip install --quiet --python $(PY) --no-deps --editable training/job
	$(if $(filter Linux,$(shell uname -s)),$(UV) pip install --quiet --compile-bytecode --python $(PY) --no-deps \
	    -r requirements-standin.txt)
	@rm -f $(VENV)/.synced-* && touch $@
	@echo "$(VENV): $(MAIN_LOCK) installed ($$($(PY) -c 'import tensorflow as tf; \
	print("TensorFlow", tf.__version__, "sees", len(tf.config.list_physical_devices("GPU")), "GPU(s)")' 2>/dev/null))"

$(COMPAT_VENV)/.synced: $(COMPAT_LOCK) training/job/pyproject.toml | $(UV)
	@test -x $(COMPAT_PY) || $(UV) venv --quiet --seed --python "$(COMPAT_PYTHON)" $(COMPAT_VENV) || { echo \
	"error: .venv-compat needs Python $(COMPAT_PYTHON) (TF 2.12/2.13 support no newer one): install it \
	(python.org, brew install python@3.11, apt install python3.11) or run \`$(UV) python install 3.11\`" >&2; exit 1; }
	$(UV) pip sync --quiet --compile-bytecode --python $(COMPAT_PY) $(COMPAT_LOCK)
	$(UV) pip install --quiet --python $(COMPAT_PY) --no-deps --editable training/job
	@touch $@

setup: $(VENV)/.synced-$(MAIN_LOCK) ## create .venv from the lock (GPU=1: the CUDA build), only when it changes

setup-compat: $(COMPAT_VENV)/.synced ## create .venv-compat (TF 2.12/Keras 2) for the job's tests

lock: | $(UV) ## re-resolve requirements*.txt into the universal locks (needs the network)
	$(UV_COMPILE) requirements.txt requirements-dev.txt -o requirements.lock
	$(UV_COMPILE) requirements-gpu.txt requirements-dev.txt --override requirements-gpu-override.txt \
	    -o requirements-gpu.lock
	$(UV_COMPILE) requirements-compat.txt -o requirements-compat.lock

# Each lock must resolve, wheels included, on each platform users have: a platform-targeted
# resolution of the top-level requirements, constrained to the lock's pins. Nothing is installed.
PLATFORMS := aarch64-apple-darwin x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu
check-platforms: | $(UV) ## the locks resolve for macOS arm64, Linux x86_64 and aarch64 (no install)
	@set -e; check() { lock=$$1; python=$$2; platform=$$3; shift 3; \
	  $(UV) pip compile --quiet --no-header --python-version $$python --python-platform $$platform \
	      -c $$lock "$$@" -o /dev/null \
	  && echo "  ok  $$lock  Python $$python  $$platform" \
	  || { echo "error: $$lock does not resolve for $$platform (Python $$python); fix the markers in \
	the requirements files and run make lock" >&2; exit 1; }; }; \
	for platform in $(PLATFORMS); do \
	  for python in 3.11 3.12 3.13; do \
	    check requirements.lock $$python $$platform requirements.txt requirements-dev.txt; done; \
	  check requirements-compat.lock 3.11 $$platform requirements-compat.txt; \
	done; \
	check requirements-gpu.lock 3.11 x86_64-unknown-linux-gnu requirements-gpu.txt requirements-dev.txt \
	    --override requirements-gpu-override.txt

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

# Every core: pytest-xdist, the longest tests first (tests/conftest.py), idle workers stealing work.
XDIST := -n $(shell nproc 2>/dev/null || sysctl -n hw.ncpu 2>/dev/null || echo 2) --dist worksteal

test: setup setup-compat lint ## lint, the whole suite (TF 2.21) and the job's tests again under TF 2.12
	$(call run_pytest,$(PY),$(XDIST) tests)
	$(call run_pytest,$(COMPAT_PY),$(XDIST) tests/job)

test-fast: setup ## the suite without the slow (training) tests, main environment only
	$(call run_pytest,$(PY),$(XDIST) tests -m "not slow")

# --- the cloud path ---------------------------------------------------------------------------
check: setup ## every prerequisite of the cloud path, ✓ or ✗ with the remedy (spends nothing)
	$(PY) -m training.launch check --stack $(STACK) --splits $(SPLITS)

# --- data -------------------------------------------------------------------------------------
data: setup ## Kaggle's train.zip (downloaded with your Kaggle token, or DATA=path/to/train.zip) → the seed's splits
	$(PY) -m training.data.prepare $(if $(DATA),"$(DATA)") --out $(SPLITS)

data-sample: setup ## generate the built-in synthetic sample set and split it like the seed
	$(PY) -m training.data.sample --out $(SPLITS)

data-upload: setup ## stage the splits to the project bucket (resumable, deduplicated)
	$(PY) -m training.data.upload --splits $(SPLITS) --stack $(STACK)

# --- training ---------------------------------------------------------------------------------
LAUNCH_ARGS = $(if $(EXPERIMENT),--experiment $(EXPERIMENT)) $(if $(HP),--hp $(HP)) \
              $(if $(INSTANCE),--instance $(INSTANCE)) \
              $(if $(INSTANCE_COUNT),--instance-count $(INSTANCE_COUNT)) \
              $(if $(WEIGHTS),--weights-file $(WEIGHTS)) --splits $(SPLITS) --stack $(STACK) --runs $(RUNS)
RUNTIME_ARGS = $(if $(MAX_RUNTIME_MINUTES),--max-runtime-minutes $(MAX_RUNTIME_MINUTES))
FOLLOW_ARGS = $(if $(RECONNECT_MINUTES),--reconnect-minutes $(RECONNECT_MINUTES)) \
              $(if $(POLL_SECONDS),--poll-seconds $(POLL_SECONDS))
TUNE_ARGS = $(if $(MAX_JOBS),--max-jobs $(MAX_JOBS)) $(if $(PARALLEL),--parallel $(PARALLEL))

train-local: setup ## run an experiment on this machine, SageMaker contract emulated (default: smoke)
	$(PY) -m training.launch local $(LAUNCH_ARGS) $(if $(MODE),--mode $(MODE)) \
	    $(if $(KEEP_CHECKPOINTS),--keep-checkpoints)

train-cloud: setup ## submit an experiment to SageMaker, follow it, fetch results (default: small); INSTANCE=a,b tries each in turn
	$(PY) -m training.launch cloud $(LAUNCH_ARGS) $(RUNTIME_ARGS) $(FOLLOW_ARGS) \
	    $(if $(DETACH),--detach) $(if $(FRESH),--fresh) $(if $(SPOT),--spot $(SPOT)) \
	    $(if $(CAPACITY_WAIT),--capacity-wait-minutes $(CAPACITY_WAIT))

INTERRUPT_ARGS = $(if $(filter early,$(INTERRUPT)),--interrupt early,$(if $(INTERRUPT),--interrupt))

rehearse: setup setup-compat ## the cloud commands offline, against the stand-in: SCENARIO=run|detach|max-runtime|tune-detach|ctrl-c|all
	$(PY) -m training.rehearse $(if $(SCENARIO),--scenario $(SCENARIO)) \
	    $(if $(EXPERIMENT),--experiment $(EXPERIMENT)) $(if $(HP),--hp $(HP)) --splits $(SPLITS) \
	    $(INTERRUPT_ARGS) $(if $(INSTANCE_COUNT),--instance-count $(INSTANCE_COUNT)) \
	    $(if $(TUNE),--tune) $(TUNE_ARGS) $(RUNTIME_ARGS) $(if $(TRACK),--track $(TRACK)) \
	    $(if $(INSTANCE),--instance $(INSTANCE)) $(if $(SPOT),--spot $(SPOT)) \
	    $(if $(CAPACITY_FAIL),--capacity-fail $(CAPACITY_FAIL)) \
	    $(if $(CAPACITY_WAIT),--capacity-wait-minutes $(CAPACITY_WAIT))

standin-up: setup setup-compat ## the SageMaker stand-in as a service on 127.0.0.1: then `source .standin/env`
	$(PY) -m training.standin.service up $(if $(filter-out dev,$(STACK)),--stack $(STACK)) $(INTERRUPT_ARGS) \
	    $(if $(CAPACITY_FAIL),--capacity-fail $(CAPACITY_FAIL))

standin-down: setup ## stop the stand-in, with every job, log and checkpoint it holds
	$(PY) -m training.standin.service down

results: setup ## fetch a SageMaker job's results and write its report: make results JOB=<name>
	$(PY) -m training.launch results $(if $(JOB),--job $(JOB)) --stack $(STACK) --runs $(RUNS) $(FOLLOW_ARGS)

tune: setup ## tune the recipe on SageMaker: make tune EXPERIMENT=small MAX_JOBS=10 PARALLEL=2
	$(PY) -m training.launch tune $(if $(EXPERIMENT),--experiment $(EXPERIMENT)) $(if $(HP),--hp $(HP)) \
	    $(if $(INSTANCE),--instance $(INSTANCE)) $(if $(WEIGHTS),--weights-file $(WEIGHTS)) \
	    $(TUNE_ARGS) $(RUNTIME_ARGS) $(FOLLOW_ARGS) --splits $(SPLITS) --stack $(STACK) --runs $(RUNS) \
	    $(if $(DETACH),--detach) $(if $(SPOT),--spot $(SPOT))

tune-results: setup ## follow a tuning job, then its table, plot and best model: TUNING_JOB=<name>
	$(PY) -m training.launch tune-results $(if $(TUNING_JOB),--tuning-job $(TUNING_JOB)) \
	    --stack $(STACK) --runs $(RUNS) $(FOLLOW_ARGS)

predict: setup ## classify images with a run's model: make predict RUN=runs/<job> IMAGES=<folder|image|zip|kaggle>
	$(PY) -m training.predict $(if $(RUN),--run $(RUN)) $(if $(IMAGES),--images "$(IMAGES)") \
	    $(if $(CLIP),--clip $(CLIP)) $(if $(OUT),--out "$(OUT)")

report: setup ## one table comparing every run under runs/ with the seed
	$(PY) -m training.report.compare $(RUNS)

track: setup ## record every run under runs/ in MLflow (runs record themselves; TRACK_MODEL=1 adds models)
	$(PY) -m training.report.tracking $(RUNS) $(if $(TRACK_MODEL),--log-model)

ui: setup ## the MLflow UI on 127.0.0.1 over the runs' store (or where MLFLOW_TRACKING_URI points)
	$(PY) -m training.report.tracking runs --ui $(if $(UI_PORT),--port $(UI_PORT))

cost: setup ## time and cost on a type and every current GPU: make cost EXPERIMENT=small INSTANCE=ml.g4dn.xlarge HP=…
	$(PY) -m training.launch cost $(if $(EXPERIMENT),--experiment $(EXPERIMENT)) $(if $(HP),--hp $(HP)) \
	    $(if $(INSTANCE),--instance $(INSTANCE)) $(if $(INSTANCE_COUNT),--instance-count $(INSTANCE_COUNT)) \
	    $(RUNTIME_ARGS) --splits $(SPLITS)

bench: setup ## measure pipeline and phase speed here; writes runs/bench/bench.{json,md}
	$(PY) -m training.bench --out runs/bench

# --- infrastructure (your pulumi CLI, or a pinned one bootstrapped into .tools/; infra/pulumi_cli.py)
infra-preview: setup ## pulumi preview of the bucket, role and launcher policy
	$(PY) -m infra.cli preview --stack $(STACK)

infra-up: setup ## pulumi up, then write the outputs to .infra/<stack>.json for the launcher
	$(PY) -m infra.cli up --stack $(STACK)

infra-down: setup ## pulumi destroy (the bucket must be emptied first; the command says how)
	$(PY) -m infra.cli down --stack $(STACK)

clean: ## remove environments and caches; keeps runs/ (with the MLflow store), data/ and .infra/
	rm -rf $(VENV) $(COMPAT_VENV) .tools .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
	@echo "kept: $(RUNS)/ (run folders, the MLflow store mlflow.db and mlartifacts/), data/, .infra/ \
	and .pulumi-state/; make clean-runs deletes the runs and the MLflow store"

clean-runs: ## delete every run under RUNS (default runs/) and the MLflow store there, listing them
	@if [ -d "$(RUNS)" ]; then \
	  echo "deleting from $(RUNS)/ (fetched cloud results are still in S3; local runs are not):"; \
	  du -sh "$(RUNS)"/* "$(RUNS)"/.[!.]* 2>/dev/null | sed 's/^/  /'; rm -rf "$(RUNS)"; \
	else echo "no $(RUNS)/: nothing to delete"; fi
