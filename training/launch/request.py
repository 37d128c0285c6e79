"""The run request: one launcher command's settings, parsed and checked once, at the command line,
then handed whole to every step: plan (preflight) → stage → submit → follow → fetch.

Its hyperparameters are the job's own typed ``Hyperparameters`` as the run will send them (the
experiment's, parsed once by the job's parser, with the data's digest and the distribution the run
adds), and its instances are the candidates of the table (training/common/instances.py), in
the order they are tried (``INSTANCE=ml.g5.xlarge,ml.g4dn.xlarge``), each looked up here; only
``INSTANCE=auto`` waits for preflight, which resolves it against the account's quotas. ``SPOT``
says whether each is tried on spot capacity, on-demand, or spot first (``auto``).
"""

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path

from vgg_transfer import config as job_config
from vgg_transfer.config import Hyperparameters

from training.common.errors import UserError
from training.common.instances import AUTO, Instance, lookup
from training.common.instances import names as instance_names
from training.common.paths import RUNS_DIR
from training.common.sagemaker import TRAINING_JOB, TUNING_JOB, JobKind
from training.data import splits
from training.launch import experiments
from training.launch.capacity import check_framework
from training.launch.outage import RECONNECT_MINUTES
from training.report import seed

DEFAULT_EXPERIMENT = {"local": "smoke", "cloud": "small", "tune": "small", "cost": "small"}
KIND = {"cloud": TRAINING_JOB, "tune": TUNING_JOB}  # what each cloud command creates
SPOT_MODES = {"auto": (True, False), "true": (True,), "false": (False,)}  # SPOT=…: tried in order
CAPACITY_WAIT_MINUTES = 30.0  # how long a spot job may wait for capacity before the next candidate


@dataclass(frozen=True)
class RunRequest:
    command: str  # local | cloud | tune | cost
    experiment: experiments.Experiment  # with the command line's overrides applied
    hp: Hyperparameters  # what train.py will parse: the experiment's, and what the run adds
    instances: tuple[Instance, ...]  # the candidates, in order; none: INSTANCE=auto (preflight)
    instance_count: int
    manifest: dict | None = None  # the prepared data (cost: none needed)
    splits: Path = Path("data/splits")
    runs: Path = RUNS_DIR
    stack: str = "dev"
    weights_file: Path | None = None  # a VGG16 no-top .h5 for the weights channel
    network_isolation: bool = False
    fresh: bool = False  # a new checkpoint folder: start over instead of resuming
    detach: bool = False  # submit and return
    max_jobs: int = 1  # tune: training jobs in all, and at once
    parallel: int = 1
    mode: str = "process"  # local: in this Python, or "docker" (the SDK's local container)
    keep_checkpoints: bool = False  # local: keep a finished run's checkpoints
    poll_seconds: float | None = None  # following: how often to ask SageMaker (None: default)
    reconnect_minutes: float = RECONNECT_MINUTES  # following: how long to ride out an outage
    spot_modes: tuple[bool, ...] = (True,)  # SPOT: spot, on-demand, or spot then on-demand
    capacity_wait_minutes: float = CAPACITY_WAIT_MINUTES  # a spot job's wait, then the next

    @property
    def kind(self) -> JobKind:
        return KIND[self.command]

    @property
    def instance(self) -> Instance | None:
        """The first candidate (what make cost prices); None for INSTANCE=auto."""
        return self.instances[0] if self.instances else None

    @property
    def instance_type(self) -> str:
        return ",".join(i.name for i in self.instances) if self.instances else AUTO

    @property
    def spot(self) -> bool:
        """Whether any attempt may run on spot capacity (its max wait then applies)."""
        return True in self.spot_modes

    @property
    def concurrent(self) -> int:
        """Instances running at once: what the quota must cover."""
        return self.instance_count * (self.parallel if self.command == "tune" else 1)

    def check(self) -> None:
        """Every setting, before any AWS call or upload (an INSTANCE=auto request is checked
        against its type once preflight has chosen it: ``check_on``)."""
        hp = self.hp
        if self.weights_file is not None:
            if not self.weights_file.is_file():
                raise UserError(f"WEIGHTS={self.weights_file}: no such file (a VGG16 no-top .h5)")
            if self.weights_file.suffix.lower() not in (".h5", ".hdf5"):
                raise UserError(f"WEIGHTS={self.weights_file}: expected a Keras .h5 weights file")
        if self.network_isolation and hp.weights == "imagenet" and not self.weights_file:
            raise UserError(
                "network isolation blocks the ImageNet download: pass WEIGHTS=<vgg16 no-top .h5> "
                "(sent through the weights channel)"
            )
        if hp.cache_features and self.instance_count > 1:
            raise UserError(
                "cache_features=true runs on one host only; drop it or use INSTANCE_COUNT=1"
            )
        experiment = self.experiment
        if self.spot and experiment.max_runtime_seconds > experiment.max_wait_seconds:
            raise UserError(
                f"a max runtime of {experiment.max_runtime_minutes:g} min exceeds the "
                f"experiment's max_wait_minutes={experiment.max_wait_minutes:g} (a spot job "
                "waits at most that long, its runtime included): lower MAX_RUNTIME_MINUTES or "
                f"raise max_wait_minutes in training/experiments/{experiment.name}.yaml"
            )
        if self.command == "tune" and len(self.spot_modes) > 1:
            raise UserError(
                "SPOT=auto is for make train-cloud: a tuning job runs all its training jobs on "
                "spot or all on-demand; use SPOT=true or SPOT=false (its INSTANCE candidates "
                "are tried by SageMaker itself)"
            )
        if self.command == "tune" and self.parallel > self.max_jobs:
            raise UserError(f"PARALLEL={self.parallel} exceeds MAX_JOBS={self.max_jobs}")
        if self.command != "local":
            for instance in self.instances:  # every candidate, before anything is spent
                self.check_on(instance)

    def check_on(self, instance: Instance) -> None:
        """The recipe on ``instance``: the image it can run, replicas and batch size, XLA."""
        check_framework(instance, instance.framework[0])
        replicas = max(instance.gpus, 1) * self.instance_count
        keras = 3 if _version(instance.framework[0]) >= (2, 16) else 2  # TF 2.16 took Keras 3
        problem = job_config.xla_problem(self.hp.xla, replicas, keras) or job_config.batch_problem(
            self.hp.batch_size, replicas
        )
        if problem:
            raise UserError(f"{problem} ({self.instance_count}x {instance.name})")


def _version(text: str) -> tuple:
    return tuple(int(part) for part in text.split(".")[:2])


def run_settings(experiment: experiments.Experiment, manifest: dict | None,
                 instance_count: int) -> Hyperparameters:  # fmt: skip
    """The experiment's settings with what a run adds: the data's digest, and several instances
    as one multi-worker job."""
    added: dict = {"dataset_digest": manifest["dataset_digest"] if manifest else ""}
    if instance_count > 1:
        added["distribution"] = "multi_worker"
    return dataclasses.replace(experiment.hp, **added)


def required_data(args: argparse.Namespace, experiment: experiments.Experiment) -> dict:
    """The prepared splits the experiment reads, whole; a cloud run of a seed experiment also
    needs the seed's number of training images (before anything is staged or billed)."""
    reference = seed.RESULTS.get(experiment.seed_reference or "")
    train = None
    if reference and args.command != "local":
        train = (experiment.train_split, reference["train_images"])
    return splits.require(args.splits, list(experiment.channels.values()), train)


def candidates(text: str) -> tuple[Instance, ...]:
    """INSTANCE=…: one type, several in the order to try them, or auto (none: preflight picks)."""
    names = instance_names(text)
    if names == [AUTO]:
        return ()
    if AUTO in names or not names:
        raise UserError(
            f"INSTANCE={text}: name instance types (ml.g5.xlarge,ml.g4dn.xlarge) or {AUTO} alone"
        )
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise UserError(f"INSTANCE={text} names {', '.join(repeated)} twice: name each type once")
    return tuple(lookup(name) for name in names)


def spot_modes(text: str | None, experiment: experiments.Experiment) -> tuple[bool, ...]:
    """SPOT=auto|true|false (default: the experiment's ``spot``): the capacity each candidate is
    tried on, in order."""
    if text is None:
        return (experiment.spot,)
    key = {"1": "true", "on": "true", "0": "false", "off": "false"}.get(text.lower(), text.lower())
    if key not in SPOT_MODES:
        raise UserError(f"SPOT={text}: expected auto (spot, then on-demand), true or false")
    return SPOT_MODES[key]


def from_args(args: argparse.Namespace) -> RunRequest:
    """The request of a parsed command line, every setting checked (see ``RunRequest.check``)."""
    command = args.command
    experiment = experiments.load(args.experiment or DEFAULT_EXPERIMENT[command], args.hp)
    minutes = getattr(args, "max_runtime_minutes", None)
    if minutes is not None:
        experiment = dataclasses.replace(experiment, max_runtime_minutes=minutes)
    if command == "tune":
        experiments.tuning_ranges(experiment)  # a bad range: refused before anything else
    count = 1 if command == "tune" else (getattr(args, "instance_count", None) or
                                          experiment.instance_count)  # fmt: skip
    instance_type = getattr(args, "instance", None) or experiment.instance_type
    manifest = splits.load(args.splits) if command == "cost" else required_data(args, experiment)
    request = RunRequest(
        command=command,
        experiment=experiment,
        hp=run_settings(experiment, manifest, count),
        instances=() if command == "local" else candidates(instance_type),
        instance_count=count,
        manifest=manifest,
        splits=args.splits,
        runs=args.runs,
        stack=getattr(args, "stack", "dev"),
        weights_file=getattr(args, "weights_file", None),
        network_isolation=getattr(args, "network_isolation", False),
        fresh=getattr(args, "fresh", False) or command == "tune",  # each tuning: a new folder
        detach=getattr(args, "detach", False),
        max_jobs=getattr(args, "max_jobs", 1),
        parallel=getattr(args, "parallel", 1),
        mode=getattr(args, "mode", "process"),
        keep_checkpoints=getattr(args, "keep_checkpoints", False),
        poll_seconds=getattr(args, "poll_seconds", None),
        reconnect_minutes=getattr(args, "reconnect_minutes", RECONNECT_MINUTES),
        spot_modes=spot_modes(getattr(args, "spot", None), experiment),
        capacity_wait_minutes=getattr(args, "capacity_wait_minutes", None) or CAPACITY_WAIT_MINUTES,
    )
    request.check()
    return request
