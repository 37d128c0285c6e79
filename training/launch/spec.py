"""The job spec: one run of the training job, built once from the request and where it runs. Every
runner takes a spec and nothing else:

- ``local.run_process``: in this Python, under an emulated ``/opt/ml`` (make train-local);
- ``docker_mode.run_in_docker``: the SDK's local-container mode, the real image;
- ``submit.submit``: a SageMaker training or tuning job (make train-cloud, make tune).

The job's own ``Hyperparameters`` (vgg_transfer/config.py), parsed once into the request, are the
single list of settings; this module only maps them onto a contract root (the weights channel's
file, the checkpoint folder), in one place.
"""

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from vgg_transfer import config as job_config
from vgg_transfer.config import Hyperparameters
from vgg_transfer.contract import OptMl

from training.common.infra_outputs import InfraOutputs
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
    spot: bool = False  # cloud: managed spot capacity
    instance_types: tuple[str, ...] = ()  # cloud: every candidate type in order (tuning sends all)
    image: str = ""  # the training image URI; "" runs in this Python
    output: str = ""  # local run folder, or the S3 output path
    role_arn: str = ""  # cloud: the execution role
    code_bucket: str = ""  # cloud: where the SDK stages the code...
    code_prefix: str = ""  # ...and under which prefix
    network_isolation: bool = False
    tags: dict[str, str] = field(default_factory=dict)
    keep_checkpoints: bool = False  # local: keep the checkpoints of a finished run
    environment: dict[str, str] = field(default_factory=dict)  # cloud: the container's, and the
    # job description's (what the report reads back: experiment, commit, the price preflight used)


def job_settings(request: RunRequest, opt_ml: OptMl) -> Hyperparameters:
    """The run's settings for a contract rooted at ``opt_ml`` (``/opt/ml`` in a container,
    ``runs/<job>/opt_ml`` in-process): a weights file is read from the weights channel. What the
    job's checkpoints keep, and so what preflight compares them with."""
    if not request.weights_file:
        return request.hp
    return dataclasses.replace(
        request.hp, weights=f"{opt_ml.channel('weights')}/{request.weights_file.name}"
    )


def job_hyperparameters(settings: Hyperparameters, opt_ml: OptMl) -> dict:
    """What train.py receives: the run's settings and its checkpoint folder."""
    return {**dataclasses.asdict(settings), "checkpoint_dir": opt_ml.checkpoints}


def checkpoint_name(settings: Hyperparameters, experiment: str, fresh: str = "") -> str:
    """One folder per experiment, data and recipe: re-running the same thing resumes it.
    ``fresh`` (FRESH=1) adds a suffix, so the run starts from nothing.

    The data's identity is the name's second part; the recipe part hashes only the other
    settings that differ from the job's defaults, so adding a hyperparameter (with its default)
    to the job leaves every folder's name, and so every unfinished run, where it was. The
    checkpoint itself keeps the whole recipe, and the job (and preflight) refuse one written with
    other settings."""
    defaults = job_config.recipe(job_config.Hyperparameters())
    changed = {
        key: value
        for key, value in job_config.recipe(settings).items()
        if key != "dataset_digest" and defaults.get(key) != value
    }
    recipe_hash = hashlib.sha256(json.dumps(changed, sort_keys=True).encode()).hexdigest()[:8]
    name = f"{experiment}-{settings.dataset_digest}-{recipe_hash}"
    return name + (f"-fresh-{fresh}" if fresh else "")


def checkpoint_uri(outputs: InfraOutputs, settings: Hyperparameters, experiment: str,
                   fresh: str = "") -> str:  # fmt: skip
    name = checkpoint_name(settings, experiment, fresh)
    return f"s3://{outputs.bucket}/{outputs.checkpoints_prefix}/{name}/"


def local_channels(request: RunRequest) -> dict[str, str]:
    channels = {
        channel: str(Path(request.splits) / split)
        for channel, split in request.experiment.channels.items()
    }
    if request.weights_file:
        channels["weights"] = str(request.weights_file.parent)
    return channels


def local_spec(request: RunRequest, run_dir: Path, image: str = "") -> JobSpec:
    """A run on this machine: in this Python (contract under ``run_dir/opt_ml``) or, with an
    ``image``, in the SDK's local container (contract at ``/opt/ml``)."""
    opt_ml = OptMl() if image else OptMl(str(run_dir / "opt_ml"))
    return JobSpec(
        name=run_dir.name,
        experiment=request.experiment,
        dataset_digest=request.hp.dataset_digest,
        hyperparameters=job_hyperparameters(job_settings(request, opt_ml), opt_ml),
        channels=local_channels(request),
        checkpoint=opt_ml.checkpoints,
        instance_type="local",
        instance_count=1,
        image=image,
        output=str(run_dir),
        keep_checkpoints=request.keep_checkpoints,
    )
