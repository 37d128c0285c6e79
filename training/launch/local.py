"""Local mode: the training job run on this machine, in-process under an emulated SageMaker
contract (or, with MODE=docker, in the real image through the SDK's local-container mode).

In-process, the job folder runs as SageMaker runs it (``python train.py --key value``) with the
SM_* variables pointing into an ``/opt/ml``-like tree under ``runs/<job>/opt_ml``; its model and
output folders are then packed into ``model.tar.gz`` and ``output.tar.gz`` as SageMaker packs
them, and the same results code as the cloud path writes the report. No AWS, Docker or network.
"""

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from vgg_transfer.contract import OptMl, pack_artifacts

from training.common import sagemaker
from training.common.errors import UserError
from training.common.repo import ENTRY_SCRIPT, JOB_DIR, git_commit
from training.launch.experiments import to_argument
from training.launch.request import RunRequest
from training.launch.spec import JobSpec, local_spec
from training.report import tracking
from training.report.results import RunInfo, unpack_artifacts, write_report

HOST = "algo-1"


def contract_tree(run_dir: Path) -> OptMl:
    """The /opt/ml tree under ``run_dir/opt_ml``, its folders made as SageMaker makes them."""
    opt_ml = OptMl(str(run_dir / "opt_ml"))
    for folder in (*opt_ml.folders(), opt_ml.output):
        Path(folder).mkdir(parents=True, exist_ok=True)
    return opt_ml


def mount_channels(opt_ml: OptMl, sources: dict[str, str]) -> dict[str, Path]:
    """Channels appear under input/data/<name>, as SageMaker's File mode lays them out."""
    mounted = {}
    for name, source in sources.items():
        target = Path(opt_ml.channel(name))
        if target.is_symlink() or target.exists():
            target.unlink() if target.is_symlink() else shutil.rmtree(target)
        target.symlink_to(Path(source).resolve(), target_is_directory=Path(source).is_dir())
        mounted[name] = target
    return mounted


def container_env(opt_ml: OptMl, channels: dict[str, Path], hps: dict) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "SM_MODEL_DIR": opt_ml.model,
            "SM_OUTPUT_DIR": opt_ml.output,
            "SM_OUTPUT_DATA_DIR": opt_ml.output_data,
            "SM_INPUT_CONFIG_DIR": opt_ml.input_config,
            "SM_HOSTS": json.dumps([HOST]),
            "SM_CURRENT_HOST": HOST,
            "SM_HPS": json.dumps(hps),
            "SM_CHANNELS": json.dumps(sorted(channels)),
            "PYTHONUNBUFFERED": "1",
        }
    )
    for name, path in channels.items():
        env[f"SM_CHANNEL_{name.upper()}"] = str(path)
    return env


def run_job(args: list[str], env: dict[str, str], log_path: Path) -> int:
    """Runs train.py from the job folder, streaming its output to the terminal and a log."""
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, ENTRY_SCRIPT, *args],
            cwd=JOB_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            for line in process.stdout:
                sys.stdout.write(line)
                log.write(line)
            return process.wait()
        except KeyboardInterrupt:
            process.terminate()  # the job checkpoints finished epochs; SIGTERM as on spot
            process.wait()
            raise


def failure_reason(opt_ml: OptMl, log_path: Path) -> str:
    failure = Path(opt_ml.failure)
    if failure.exists():
        return failure.read_text().strip()
    tail = log_path.read_text().strip().splitlines()[-5:]
    return " | ".join(tail) or "no output"


def run_process(spec: JobSpec) -> float:
    """Runs the spec in this Python under the emulated contract; returns the training seconds."""
    run_dir = Path(spec.output)
    opt_ml = contract_tree(run_dir)
    channels = mount_channels(opt_ml, spec.channels)
    hps = spec.hyperparameters
    (Path(opt_ml.input_config) / "hyperparameters.json").write_text(
        json.dumps({k: to_argument(v) for k, v in hps.items()}, indent=2)
    )
    args = [item for key, value in hps.items() for item in (f"--{key}", to_argument(value))]
    print(
        f"[local] job {spec.name}: experiment {spec.experiment.name}, data {spec.dataset_digest}, "
        f"outputs in {run_dir}"
    )
    log_path = run_dir / "train.log"
    started = time.time()
    code = run_job(args, container_env(opt_ml, channels, hps), log_path)
    seconds = time.time() - started
    if code != 0:
        raise UserError(
            f"local job {spec.name} failed (exit {code}): {failure_reason(opt_ml, log_path)} "
            f"— full log: {log_path}"
        )
    pack_artifacts(opt_ml, str(run_dir))
    clear_instance(opt_ml, spec.keep_checkpoints)
    return round(seconds, 1)


def clear_instance(opt_ml: OptMl, keep_checkpoints: bool) -> None:
    """What the instance held once its artifacts are packed, as SageMaker's instance goes: the
    model and output folders (the run folder gets them unpacked) and the checkpoints (a finished
    run resumes nothing; KEEP_CHECKPOINTS=1 keeps them)."""
    folders = [opt_ml.model, opt_ml.output_data]
    if not keep_checkpoints:
        folders.append(opt_ml.checkpoints)
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


def run_local(request: RunRequest, name: str | None = None) -> Path:
    """Runs the request here (``request.mode``: "process", the emulated contract, or "docker",
    the SDK's local-container mode); returns the report's path."""
    experiment = request.experiment
    run_dir = (request.runs / (name or sagemaker.job_name(experiment.name))).resolve()
    if request.mode == "docker":
        from training.launch import docker_mode

        image = docker_mode.require_image(experiment)
        spec = local_spec(request, run_dir, image=image)
        docker_mode.run_in_docker(spec)
        return report_local_run(spec, seconds=None)
    spec = local_spec(request, run_dir)
    seconds = run_process(spec)
    return report_local_run(spec, seconds)


def report_local_run(spec: JobSpec, seconds: float | None) -> Path:
    run_dir = Path(spec.output)
    unpack_artifacts(run_dir)
    info = RunInfo(
        job_name=spec.name,
        mode="local",
        experiment=spec.experiment.name,
        seed_reference=spec.experiment.seed_reference,
        instance_type=f"local ({platform.machine()}, {os.cpu_count()} cores)",
        instance_count=1,
        image_uri=spec.image or f"local Python {platform.python_version()}",
        git_commit=git_commit(),
        dataset_digest=spec.dataset_digest,
        training_seconds=seconds,
        extra={"experiment_settings": spec.experiment.to_dict()},
    )
    report = write_report(run_dir, info)
    tracking.record_run(run_dir)
    return report
