"""The run request: one launcher command's settings, resolved and checked once, at the command
line, then handed whole to every step: plan (preflight) → stage → submit → follow → results.

The job's own ``Hyperparameters`` object is the request's hyperparameters (``request.hp``), so the
launcher reads settings by name, as the job does, never by string key.
"""

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path

from vgg_transfer import config as job_config
from vgg_transfer.config import Hyperparameters

from training.common.errors import UserError
from training.launch import experiments
from training.launch.capacity import AUTO, Instance, check_framework, lookup
from training.launch.outage import RECONNECT_MINUTES

DEFAULT_EXPERIMENT = {"local": "smoke", "cloud": "small", "tune": "small", "cost": "small"}


@dataclass(frozen=True)
class RunRequest:
    command: str  # local | cloud | tune | cost
    experiment: experiments.Experiment  # with the command line's overrides applied
    instance_type: str  # a known type, or "auto" (resolved against your quotas by preflight)
    instance_count: int
    splits: Path = Path("data/splits")
    runs: Path = Path("runs")
    stack: str = "dev"
    weights_file: Path | None = None  # a VGG16 no-top .h5 for the weights channel
    network_isolation: bool = False
    fresh: bool = False  # a new checkpoint folder: start over instead of resuming
    detach: bool = False  # submit and return
    max_jobs: int = 1  # tune: training jobs in all, and at once
    parallel: int = 1
    mode: str = "process"  # local: in this Python, or "docker" (the SDK's local container)
    poll_seconds: float | None = None  # following: how often to ask SageMaker (None: default)
    reconnect_minutes: float = RECONNECT_MINUTES  # following: how long to ride out an outage

    @property
    def hp(self) -> Hyperparameters:
        return self.experiment.hp

    @property
    def concurrent(self) -> int:
        """Instances running at once: what the quota must cover."""
        return self.instance_count * (self.parallel if self.command == "tune" else 1)

    def check(self, instance: Instance | None = None) -> None:
        """Every setting, before any AWS call or upload; ``instance``: the resolved type when
        the request asked for INSTANCE=auto (checked again once it is known)."""
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
        if experiment.spot and experiment.max_runtime_seconds > experiment.max_wait_seconds:
            raise UserError(
                f"a max runtime of {experiment.max_runtime_minutes:g} min exceeds the "
                f"experiment's max_wait_minutes={experiment.max_wait_minutes:g} (a spot job "
                "waits at most that long, its runtime included): lower MAX_RUNTIME_MINUTES or "
                f"raise max_wait_minutes in training/experiments/{experiment.name}.yaml"
            )
        if self.command == "tune" and self.parallel > self.max_jobs:
            raise UserError(f"PARALLEL={self.parallel} exceeds MAX_JOBS={self.max_jobs}")
        if instance is None and self.instance_type != AUTO and self.command != "local":
            instance = lookup(self.instance_type)
        if instance is not None:
            self._check_on(instance)

    def _check_on(self, instance: Instance) -> None:
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


def from_args(args: argparse.Namespace) -> RunRequest:
    """The request of a parsed command line, every setting checked (see ``RunRequest.check``)."""
    command = args.command
    experiment = experiments.load(args.experiment or DEFAULT_EXPERIMENT[command], args.hp)
    minutes = getattr(args, "max_runtime_minutes", None)
    if minutes is not None:
        experiment = dataclasses.replace(experiment, max_runtime_minutes=minutes)
    if command == "tune":
        experiments.tuning_ranges(experiment)  # a bad range: refused before anything else
    count = getattr(args, "instance_count", None) or experiment.instance_count
    request = RunRequest(
        command=command,
        experiment=experiment,
        instance_type=getattr(args, "instance", None) or experiment.instance_type,
        instance_count=1 if command == "tune" else count,
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
        poll_seconds=getattr(args, "poll_seconds", None),
        reconnect_minutes=getattr(args, "reconnect_minutes", RECONNECT_MINUTES),
    )
    if request.command == "cost" and request.instance_type == AUTO:
        raise UserError(
            "INSTANCE=auto is resolved against your account's quotas when a job is launched; "
            "name a type here (e.g. INSTANCE=ml.g4dn.xlarge)"
        )
    request.check()
    return request
