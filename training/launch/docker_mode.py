"""``make train-local MODE=docker``: the SDK's own local-container mode with the real TF image.

SageMaker SDK v3 runs the AWS training image under docker compose on this machine
(``ModelTrainer(training_mode=Mode.LOCAL_CONTAINER)``), with the splits as local channels; its
``model.tar.gz`` and ``output.tar.gz`` then go through the same results code as every run.
Needs a Docker engine with compose, and a `docker login` to the DLC registry (ECR) for the pull.
"""

import os
import shutil
import subprocess
from pathlib import Path

from vgg_transfer.contract import MODEL_ARCHIVE, OUTPUT_ARCHIVE

from training.common import sagemaker
from training.common.errors import UserError
from training.common.instances import lookup
from training.common.repo import ENTRY_SCRIPT, JOB_DIR
from training.launch.experiments import Experiment, to_argument
from training.launch.spec import JobSpec

CPU_IMAGE_INSTANCE = "ml.m5.xlarge"  # image_uris picks the CPU flavour for it
GPU_IMAGE_INSTANCE = "ml.g4dn.xlarge"


def docker_problem() -> str | None:
    """Why local-container mode cannot run here, or None."""
    if not shutil.which("docker"):
        return "the docker command is not installed"
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"`docker info` failed: {error}"
    if info.returncode != 0:
        return (
            "no Docker engine answers `docker info`: "
            + (info.stderr.strip().splitlines() or ["?"])[-1]
        )
    return None


def local_image(experiment: Experiment, region: str, gpu: bool) -> str:
    """The TF version the cloud job would use, in the CPU (or GPU) flavour for this machine."""
    from sagemaker.core import image_uris

    version, python = lookup(experiment.instance_type).framework
    return image_uris.retrieve(
        framework="tensorflow",
        region=region,
        version=version,
        py_version=python,
        instance_type=GPU_IMAGE_INSTANCE if gpu else CPU_IMAGE_INSTANCE,
        image_scope="training",
    )


def build_trainer(spec: JobSpec, gpu: bool):
    from sagemaker.train import ModelTrainer
    from sagemaker.train.configs import Compute, InputData, SourceCode
    from sagemaker.train.model_trainer import Mode

    trainer = ModelTrainer(
        training_mode=Mode.LOCAL_CONTAINER,
        local_container_root=spec.output,
        training_image=spec.image,
        base_job_name=sagemaker.base_name(spec.experiment.name),
        source_code=SourceCode(source_dir=str(JOB_DIR), entry_script=ENTRY_SCRIPT),
        compute=Compute(instance_type="local_gpu" if gpu else "local_cpu", instance_count=1),
        hyperparameters={k: to_argument(v) for k, v in spec.hyperparameters.items()},
        role="arn:aws:iam::000000000000:role/local-mode",  # unused by local mode, required by the SDK
    )
    inputs = [
        InputData(channel_name=name, data_source=str(Path(path).resolve()))
        for name, path in spec.channels.items()
    ]
    return trainer, inputs


def has_gpu() -> bool:
    return shutil.which("nvidia-smi") is not None


def require_image(experiment: Experiment) -> str:
    """The image to run, once a Docker engine is known to answer."""
    problem = docker_problem()
    if problem:
        raise UserError(
            f"MODE=docker needs a running Docker engine with compose ({problem}); "
            "run `make train-local` without MODE=docker for the in-process emulation"
        )
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return local_image(experiment, region, has_gpu())


def run_in_docker(spec: JobSpec) -> None:
    """Trains in the real image, leaving model.tar.gz and output.tar.gz in the run folder."""
    run_dir = Path(spec.output)
    run_dir.mkdir(parents=True, exist_ok=True)
    gpu = has_gpu()
    trainer, inputs = build_trainer(spec, gpu)
    print(
        f"[docker] {spec.image} ({'GPU' if gpu else 'CPU'}); pull it after `aws ecr get-login-password`"
    )
    trainer.train(input_data_config=inputs, wait=True)
    for name in (MODEL_ARCHIVE, OUTPUT_ARCHIVE):
        shutil.copy2(run_dir / "compressed_artifacts" / name, run_dir / name)
