"""The job spec: one run of the training job, built once from the experiment, the data manifest and
where it runs (plus command-line overrides). Every runner takes a spec and nothing else:

- ``local.run_process``: in this Python, under an emulated ``/opt/ml`` (make train-local);
- ``docker_mode.run_in_docker``: the SDK's local-container mode, the real image;
- ``submit.submit``: a SageMaker training job through ``ModelTrainer`` (make train-cloud).

The job's own ``Hyperparameters`` (vgg_transfer/config.py) are the single list of settings; this
module only fills in what a run adds (data digest, container paths, distribution), in one place.
"""

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from vgg_transfer import config as job_config
from vgg_transfer.contract import OptMl

from training.common.infra_outputs import InfraOutputs
from training.launch import common
from training.launch.experiments import Experiment
from training.launch.request import RunRequest


@dataclass(frozen=True)
class JobSpec:
    """Everything a runner needs, and nothing it has to work out again."""

    name: str  # the run's name; SageMaker appends a timestamp to it
    experiment: Experiment
    dataset_digest: str
    hyperparameters: dict  # exactly what train.py receives (resolved, typed)
    channels: dict[str, str]  # channel → local folder or S3 prefix
    checkpoint: str  # local folder, or the S3 URI SageMaker syncs /opt/ml/checkpoints with
    instance_type: str
    instance_count: int
    image: str = ""  # the training image URI; "" runs in this Python
    output: str = ""  # local run folder, or the S3 output path
    role_arn: str = ""  # cloud: the execution role
    code_bucket: str = ""  # cloud: where the SDK stages the code...
    code_prefix: str = ""  # ...and under which prefix
    network_isolation: bool = False
    tags: dict[str, str] = field(default_factory=dict)


def job_hyperparameters(request: RunRequest, digest: str, opt_ml: OptMl) -> dict:
    """The experiment's hyperparameters and what this run adds, for a contract rooted at
    ``opt_ml`` (``/opt/ml`` in a container, ``runs/<job>/opt_ml`` in-process)."""
    hps = request.experiment.resolved_hyperparameters()
    hps["dataset_digest"] = digest
    hps["checkpoint_dir"] = opt_ml.checkpoints
    if request.weights_file:
        hps["weights"] = f"{opt_ml.channel('weights')}/{request.weights_file.name}"
    if request.instance_count > 1:
        hps["distribution"] = "multi_worker"
    return hps


def checkpoint_name(experiment: Experiment, digest: str, fresh: str = "") -> str:
    """One folder per experiment, data and recipe: re-running the same thing resumes it.
    ``fresh`` (FRESH=1) adds a suffix, so the run starts from nothing.

    The recipe part hashes only the settings that differ from the job's defaults, so adding a
    hyperparameter (with its default) to the job leaves every folder's name, and so every
    unfinished run, where it was. The checkpoint itself keeps the whole recipe, and the job (and
    preflight) refuse one written with other settings."""
    defaults = job_config.recipe(job_config.Hyperparameters())
    changed = {
        key: value
        for key, value in job_config.recipe(experiment.hp).items()
        if defaults.get(key) != value
    }
    recipe_hash = hashlib.sha256(json.dumps(changed, sort_keys=True).encode()).hexdigest()[:8]
    return f"{experiment.name}-{digest}-{recipe_hash}" + (f"-fresh-{fresh}" if fresh else "")


def checkpoint_uri(
    outputs: InfraOutputs, experiment: Experiment, digest: str, fresh: str = ""
) -> str:
    name = checkpoint_name(experiment, digest, fresh)
    return f"s3://{outputs.bucket}/{outputs.checkpoints_prefix}/{name}/"


def local_channels(request: RunRequest) -> dict[str, str]:
    channels = {
        channel: str(Path(request.splits) / split)
        for channel, split in common.channel_splits(request.experiment).items()
    }
    if request.weights_file:
        channels["weights"] = str(request.weights_file.parent)
    return channels


def local_spec(request: RunRequest, manifest: dict, run_dir: Path, image: str = "") -> JobSpec:
    """A run on this machine: in this Python (contract under ``run_dir/opt_ml``) or, with an
    ``image``, in the SDK's local container (contract at ``/opt/ml``)."""
    digest = manifest["dataset_digest"]
    opt_ml = OptMl() if image else OptMl(str(run_dir / "opt_ml"))
    return JobSpec(
        name=run_dir.name,
        experiment=request.experiment,
        dataset_digest=digest,
        hyperparameters=job_hyperparameters(request, digest, opt_ml),
        channels=local_channels(request),
        checkpoint=opt_ml.checkpoints,
        instance_type="local",
        instance_count=1,
        image=image,
        output=str(run_dir),
    )
