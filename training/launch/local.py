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
import tarfile
import time
from pathlib import Path

from training.errors import UserError
from training.launch import common
from training.launch.experiments import Experiment, to_argument
from training.launch.spec import JobSpec, local_spec
from training.report.results import RunInfo, unpack_artifacts, write_report

HOST = "algo-1"


def contract_tree(run_dir: Path) -> dict[str, Path]:
    opt_ml = run_dir / "opt_ml"
    tree = {
        "root": opt_ml,
        "data": opt_ml / "input" / "data",
        "config": opt_ml / "input" / "config",
        "model": opt_ml / "model",
        "output": opt_ml / "output",
        "output_data": opt_ml / "output" / "data",
        "checkpoints": opt_ml / "checkpoints",
    }
    for path in tree.values():
        path.mkdir(parents=True, exist_ok=True)
    return tree


def mount_channels(tree: dict[str, Path], sources: dict[str, str]) -> dict[str, Path]:
    """Channels appear under input/data/<name>, as SageMaker's File mode lays them out."""
    mounted = {}
    for name, source in sources.items():
        target = tree["data"] / name
        if target.is_symlink() or target.exists():
            target.unlink() if target.is_symlink() else shutil.rmtree(target)
        target.symlink_to(Path(source).resolve(), target_is_directory=Path(source).is_dir())
        mounted[name] = target
    return mounted


def container_env(tree: dict[str, Path], channels: dict[str, Path], hps: dict) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "SM_MODEL_DIR": str(tree["model"]),
            "SM_OUTPUT_DIR": str(tree["output"]),
            "SM_OUTPUT_DATA_DIR": str(tree["output_data"]),
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


def pack(folder: Path, archive: Path) -> None:
    """Like SageMaker: the folder's contents at the archive's top level."""
    with tarfile.open(archive, "w:gz") as tar:
        for item in sorted(folder.iterdir()):
            tar.add(item, arcname=item.name)


def run_job(args: list[str], env: dict[str, str], log_path: Path) -> int:
    """Runs train.py from the job folder, streaming its output to the terminal and a log."""
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, common.ENTRY_SCRIPT, *args],
            cwd=common.JOB_DIR,
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


def failure_reason(tree: dict[str, Path], log_path: Path) -> str:
    failure = tree["output"] / "failure"
    if failure.exists():
        return failure.read_text().strip()
    tail = log_path.read_text().strip().splitlines()[-5:]
    return " | ".join(tail) or "no output"


def run_process(spec: JobSpec) -> float:
    """Runs the spec in this Python under the emulated contract; returns the training seconds."""
    run_dir = Path(spec.output)
    tree = contract_tree(run_dir)
    channels = mount_channels(tree, spec.channels)
    hps = spec.hyperparameters
    (tree["config"] / "hyperparameters.json").write_text(
        json.dumps({k: to_argument(v) for k, v in hps.items()}, indent=2)
    )
    args = [item for key, value in hps.items() for item in (f"--{key}", to_argument(value))]
    print(
        f"[local] job {spec.name}: experiment {spec.experiment.name}, data {spec.dataset_digest}, "
        f"outputs in {run_dir}"
    )
    log_path = run_dir / "train.log"
    started = time.time()
    code = run_job(args, container_env(tree, channels, hps), log_path)
    seconds = time.time() - started
    if code != 0:
        raise UserError(
            f"local job {spec.name} failed (exit {code}): {failure_reason(tree, log_path)} "
            f"— full log: {log_path}"
        )
    pack(tree["model"], run_dir / "model.tar.gz")
    pack(tree["output_data"], run_dir / "output.tar.gz")
    return round(seconds, 1)


def run_local(
    experiment: Experiment,
    splits_dir: Path,
    runs_dir: Path = common.RUNS_DIR,
    weights_file: Path | None = None,
    name: str | None = None,
    mode: str = "process",
) -> Path:
    """Runs the experiment here (``mode``: "process", the emulated contract, or "docker", the
    SDK's local-container mode); returns the report's path."""
    manifest = common.require_splits(splits_dir, experiment)
    if weights_file and not Path(weights_file).is_file():
        raise UserError(f"weights file {weights_file} does not exist")
    run_dir = (runs_dir / (name or common.job_name(experiment.name))).resolve()
    if mode == "docker":
        from training.launch import docker_mode

        image = docker_mode.require_image(experiment)
        spec = local_spec(
            experiment, manifest, splits_dir, run_dir, weights_file, in_container=True, image=image
        )
        docker_mode.run_in_docker(spec)
        return report_local_run(spec, seconds=None)
    spec = local_spec(experiment, manifest, splits_dir, run_dir, weights_file)
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
        git_commit=common.git_commit(),
        dataset_digest=spec.dataset_digest,
        training_seconds=seconds,
        extra={"experiment_settings": spec.experiment.to_dict()},
    )
    return write_report(run_dir, info)
