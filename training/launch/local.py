"""Local mode: the training job run on this machine under an emulated SageMaker contract.

The job folder runs as SageMaker runs it (``python train.py --key value``) with the SM_*
variables pointing into an ``/opt/ml``-like tree under ``runs/<job>/opt_ml``; its model and
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


def mount_channels(tree: dict[str, Path], sources: dict[str, Path]) -> dict[str, Path]:
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
    name = name or common.job_name(experiment.name)
    run_dir = (runs_dir / name).resolve()  # the job runs from its own folder, as in SageMaker
    sources = {ch: splits_dir / split for ch, split in common.channel_splits(experiment).items()}
    hps = experiment.resolved_hyperparameters()
    hps["dataset_digest"] = manifest["dataset_digest"]
    if weights_file:
        if not Path(weights_file).is_file():
            raise UserError(f"weights file {weights_file} does not exist")
        sources["weights"] = Path(weights_file).parent
    if mode == "docker":
        from training.launch.docker_mode import run_in_docker

        run_dir.mkdir(parents=True, exist_ok=True)
        hps["checkpoint_dir"] = "/opt/ml/checkpoints"
        if weights_file:
            hps["weights"] = f"{common.CONTAINER_DATA}/weights/{Path(weights_file).name}"
        image = run_in_docker(experiment, sources, run_dir, hps)
        return report_local_run(run_dir, experiment, manifest, name, image, seconds=None)
    tree = contract_tree(run_dir)
    if weights_file:
        hps["weights"] = str(tree["data"] / "weights" / Path(weights_file).name)
    channels = mount_channels(tree, sources)
    hps["checkpoint_dir"] = str(tree["checkpoints"])
    (tree["config"] / "hyperparameters.json").write_text(
        json.dumps({k: to_argument(v) for k, v in hps.items()}, indent=2)
    )
    args = [item for key, value in hps.items() for item in (f"--{key}", to_argument(value))]
    print(
        f"[local] job {name}: experiment {experiment.name}, data {manifest['dataset_digest']}, "
        f"outputs in {run_dir}"
    )
    log_path = run_dir / "train.log"
    started = time.time()
    code = run_job(args, container_env(tree, channels, hps), log_path)
    seconds = time.time() - started
    if code != 0:
        raise UserError(
            f"local job {name} failed (exit {code}): {failure_reason(tree, log_path)} "
            f"— full log: {log_path}"
        )
    pack(tree["model"], run_dir / "model.tar.gz")
    pack(tree["output_data"], run_dir / "output.tar.gz")
    image = f"local Python {platform.python_version()}"
    return report_local_run(run_dir, experiment, manifest, name, image, round(seconds, 1))


def report_local_run(
    run_dir: Path,
    experiment: Experiment,
    manifest: dict,
    name: str,
    image: str,
    seconds: float | None,
) -> Path:
    unpack_artifacts(run_dir)
    info = RunInfo(
        job_name=name,
        mode="local",
        experiment=experiment.name,
        seed_reference=experiment.seed_reference,
        instance_type=f"local ({platform.machine()}, {os.cpu_count()} cores)",
        instance_count=1,
        image_uri=image,
        git_commit=common.git_commit(),
        dataset_digest=manifest["dataset_digest"],
        training_seconds=seconds,
        extra={"experiment_settings": experiment.to_dict()},
    )
    return write_report(run_dir, info)
