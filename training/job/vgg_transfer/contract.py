"""The contract between the training job and everything around it, each fact defined once.

The job (train.py), the launcher, the stand-in, the local runner and the report all import these
names; a string spelled in two places would drift. What it holds:
- the phases of the recipe;
- SageMaker's ``/opt/ml`` layout, as a container sees it, and the files the job writes there;
- the checkpoint layout: one folder per phase with a ``state.json``;
- the log lines the job prints, and the metric definitions (regexes) derived from their format;
- the hyperparameter names SageMaker reserves.

Shipped with the job: Python 3.9, standard library only.
"""

import json
import os
import re
from typing import Optional


class JobError(Exception):
    """A problem the job reports in one line, which becomes the job's FailureReason: a bad
    setting, a channel it cannot train on, weights it cannot have. Never a traceback."""


# --- the recipe's phases ---------------------------------------------------------------------------
FROZEN = "frozen"  # the conv base frozen, the head trains
FINE_TUNED = "fine_tuned"  # the top blocks unfrozen, at a low learning rate
PHASES = (FROZEN, FINE_TUNED)

# --- SageMaker's /opt/ml, and what the job writes there --------------------------------------------
OPT_ML = "/opt/ml"
MODEL_FILE = "model.h5"  # in SM_MODEL_DIR, packed into model.tar.gz
METRICS_FILE = "metrics.json"  # in SM_OUTPUT_DATA_DIR, packed into output.tar.gz
HISTORY_FILE = "history.csv"
CONFIG_FILE = "config.json"
FAILURE_FILE = "failure"  # in SM_OUTPUT_DIR: SageMaker shows it as the FailureReason
MODEL_ARCHIVE = "model.tar.gz"  # SM_MODEL_DIR, as SageMaker uploads it
OUTPUT_ARCHIVE = "output.tar.gz"  # SM_OUTPUT_DATA_DIR, likewise


class OptMl:
    """The /opt/ml tree under ``root``: ``/opt/ml`` in a container, a run folder elsewhere."""

    def __init__(self, root: str = OPT_ML) -> None:
        self.root = str(root)

    def _path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    @property
    def input_config(self) -> str:
        return self._path("input", "config")

    def channel(self, name: str) -> str:
        return self._path("input", "data", name)

    @property
    def cache(self) -> str:  # the instance's volume beside the channels, never uploaded
        return self._path("input", "cache")

    @property
    def model(self) -> str:
        return self._path("model")

    @property
    def output(self) -> str:
        return self._path("output")

    @property
    def output_data(self) -> str:
        return self._path("output", "data")

    @property
    def failure(self) -> str:
        return self._path("output", FAILURE_FILE)

    @property
    def checkpoints(self) -> str:
        return self._path("checkpoints")

    def folders(self) -> list:
        """The folders SageMaker creates before a container starts."""
        return [self.input_config, self._path("input", "data"), self.model, self.output_data,
                self.checkpoints]  # fmt: skip

    def artifacts(self) -> list:
        """What SageMaker uploads when the job ends: (folder, archive) pairs, each folder's
        contents at the archive's top level."""
        return [(self.model, MODEL_ARCHIVE), (self.output_data, OUTPUT_ARCHIVE)]


def pack_artifacts(opt_ml: OptMl, destination: str) -> list:
    """Packs the artifacts as SageMaker does, into ``destination``; returns the archives' paths."""
    import tarfile

    archives = []
    for folder, name in opt_ml.artifacts():
        archive = os.path.join(destination, name)
        with tarfile.open(archive, "w:gz") as tar:
            for item in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
                tar.add(os.path.join(folder, item), arcname=item)
        archives.append(archive)
    return archives


# --- checkpoints -------------------------------------------------------------------------------------
STATE_FILE = "state.json"


def phase_folder(checkpoint_dir: str, phase: str) -> str:
    return os.path.join(checkpoint_dir, phase)


def state_path(checkpoint_dir: str, phase: str) -> str:
    return os.path.join(phase_folder(checkpoint_dir, phase), STATE_FILE)


def is_finished(state: dict) -> bool:
    """Whether a phase's state.json records it as done (nothing left to train)."""
    return bool(state.get("finished"))


def read_state(text: str) -> dict:
    """A state.json's content; {} when it does not parse (an upload cut short)."""
    try:
        state = json.loads(text)
    except ValueError:
        return {}
    return state if isinstance(state, dict) else {}


# --- log lines and the metrics SageMaker reads from them ---------------------------------------------
# best_val_accuracy: the phase's best so far, the weights it keeps. SageMaker's tuning takes the
# latest value a metric regex matches in the log as a job's objective, so the line carries it.
EPOCH_LINE = (
    "[epoch] phase={phase} epoch={epoch}/{epochs} loss={loss:.6f} accuracy={accuracy:.6f} "
    "val_loss={val_loss:.6f} val_accuracy={val_accuracy:.6f} "
    "best_val_accuracy={best_val_accuracy:.6f} seconds={seconds:.1f}"
)
TEST_LINE = "[test] phase={phase} test_loss={test_loss:.6f} test_accuracy={test_accuracy:.6f}"
_NUMBER = r"([-+0-9.eE]+|nan)"
TUNING_OBJECTIVE = FINE_TUNED + ":best_val_accuracy"  # validation, never test


def _metric_names(line_format: str) -> list:
    """The numeric fields of a log line's format, in order (``{loss:.6f}`` → loss)."""
    return [name for name in re.findall(r"\{(\w+):", line_format) if name != "seconds"]


def metric_definitions() -> list:
    """SageMaker MetricDefinitions for every number the job logs, ``<phase>:<name>``."""
    definitions = []
    for phase in PHASES:
        for line_format, tag in ((EPOCH_LINE, "epoch"), (TEST_LINE, "test")):
            for name in _metric_names(line_format):
                regex = rf"\[{tag}\] phase={phase} .*\b{name}={_NUMBER}"
                definitions.append({"Name": f"{phase}:{name}", "Regex": regex})
    return definitions


# --- hyperparameters ---------------------------------------------------------------------------------
# SageMaker reserves names that start with these (its tuning service adds _tuning_objective_metric
# to every job it starts); they are the platform's, never the recipe's.
RESERVED_PREFIXES = ("_", "sagemaker_")
TUNING_OBJECTIVE_KEY = "_tuning_objective_metric"


def tuning_job_member(environ: Optional[dict] = None) -> Optional[str]:
    """This training job's name when a tuning job started it, else None.

    SageMaker's tuning service adds ``_tuning_objective_metric`` to the hyperparameters of every
    training job it starts; AWS's TensorFlow toolkit reads ``hyperparameters.json`` for it too
    (and keeps it off the script's command line), so the job looks where the toolkit does."""
    environ = os.environ if environ is None else environ
    name = environ.get("TRAINING_JOB_NAME")
    config_dir = environ.get("SM_INPUT_CONFIG_DIR", OptMl().input_config)
    try:
        with open(os.path.join(config_dir, "hyperparameters.json")) as handle:
            sent = json.load(handle)
    except (OSError, ValueError):
        return None
    return name if name and TUNING_OBJECTIVE_KEY in sent else None
