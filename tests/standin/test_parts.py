"""The SageMaker stand-in's parts that need no container: the checkpoint sync, how tuning draws
values, the hosts file, the container's environment, and where it hooks into moto."""

import random
import statistics
from importlib.metadata import version
from pathlib import Path

import boto3
import pytest
from accounts import BUCKET, REGION

from training.standin import containers, tuning, wiring
from training.standin.checkpoints import CheckpointSync
from training.standin.network import HostNetwork

URI = f"s3://{BUCKET}/checkpoints/run/"


def keys(s3) -> set[str]:
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="checkpoints/run/")
    return {item["Key"].removeprefix("checkpoints/run/") for item in listed.get("Contents", [])}


def test_the_sync_uploads_changes_and_mirrors_deletes(aws, tmp_path):
    s3 = boto3.client("s3", region_name=REGION)
    folder = tmp_path / "checkpoints"
    (folder / "fine_tuned").mkdir(parents=True)
    sync = CheckpointSync(s3, URI, folder)  # what is there now was restored from S3
    (folder / "fine_tuned" / "last-epoch1.npz").write_bytes(b"1")
    sync.sync_once(shuffle=True)
    assert keys(s3) == {"fine_tuned/last-epoch1.npz"}
    # The job writes the next epoch and prunes the previous one: S3 follows both.
    (folder / "fine_tuned" / "last-epoch2.npz").write_bytes(b"2")
    (folder / "fine_tuned" / "last-epoch1.npz").unlink()
    sync.sync_once(shuffle=True)
    assert keys(s3) == {"fine_tuned/last-epoch2.npz"}
    body = s3.get_object(Bucket=BUCKET, Key="checkpoints/run/fine_tuned/last-epoch2.npz")["Body"]
    assert body.read() == b"2"


def test_an_epoch_counts_as_in_s3_once_its_state_and_weights_are(aws, tmp_path):
    s3 = boto3.client("s3", region_name=REGION)
    folder = tmp_path / "checkpoints" / "job-001" / "fine_tuned"  # a tuning job's own folder
    folder.mkdir(parents=True)
    sync = CheckpointSync(s3, URI, tmp_path / "checkpoints")
    (folder / "state.json").write_text('{"epochs_done": 1, "last_weights": "last-epoch1.npz"}')
    sync.sync_once(shuffle=False)
    assert sync.epochs_in_s3("fine_tuned") == 0  # the weights it names are not there yet
    (folder / "last-epoch1.npz").write_bytes(b"w")
    sync.sync_once(shuffle=False)
    assert sync.epochs_in_s3("fine_tuned") == 1
    assert sync.epochs_in_s3("frozen") == 0


@pytest.mark.parametrize(("scaling", "median"), [("Logarithmic", 1e-5), ("Linear", 5.05e-5)])
def test_tuning_draws_inside_each_range_on_its_scale(scaling, median):
    ranges = {
        "ContinuousParameterRanges": [
            {"Name": "lr", "MinValue": "1e-6", "MaxValue": "1e-4", "ScalingType": scaling}
        ],
        "IntegerParameterRanges": [{"Name": "epochs", "MinValue": "2", "MaxValue": "5"}],
        "CategoricalParameterRanges": [{"Name": "block", "Values": ["b3", "b4", "b5"]}],
    }
    rng = random.Random(0)
    draws = [tuning.draw(ranges, rng) for _ in range(2000)]
    rates = [float(d["lr"]) for d in draws]
    assert min(rates) >= 1e-6 and max(rates) <= 1e-4
    assert statistics.median(rates) == pytest.approx(median, rel=0.15)
    assert {d["epochs"] for d in draws} == {"2", "3", "4", "5"}
    assert {d["block"] for d in draws} == {"b3", "b4", "b5"}


def test_one_host_resolves_algo_1_and_the_hosts_file_goes_with_the_job():
    with HostNetwork("vgg-smoke-1", ["algo-1"]) as network:
        hosts = Path(network.hosts_file)
        assert "127.0.0.1 localhost algo-1" in hosts.read_text()
        assert network.namespace("algo-1") is None
    assert not hosts.exists()


def test_the_container_sees_the_images_and_sagemakers_variables_only(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKSTATION_ONLY", "1")
    env = containers.environment(
        "img/tensorflow-training:2.11-gpu-py39", tmp_path / "home", {"TRAINING_JOB_NAME": "j"}
    )
    assert "WORKSTATION_ONLY" not in env and "MAKEFLAGS" not in env
    assert env["TRAINING_JOB_NAME"] == "j"
    assert env["SAGEMAKER_TRAINING_MODULE"] == "sagemaker_tensorflow_container.training:main"
    assert env["PATH"].startswith(str(containers.REPO / ".venv-compat" / "bin"))  # the P2 image
    assert Path(env["HOME"]).is_absolute() and Path(env["HOME"]).is_dir()
    # Without a ContainerEntrypoint (tuning jobs), the image's own: AWS's toolkit.
    assert containers.command_of({"TrainingImage": "img"}) == ["train"]
    assert containers.command_of({"ContainerEntrypoint": ["/bin/sh", "x.sh"]}) == [
        "/bin/sh",
        "x.sh",
    ]


def test_the_moto_it_hooks_into_is_the_pinned_one_with_the_same_hook_points():
    from moto.sagemaker.responses import SageMakerResponse

    pinned = next(
        line.split("==")[1].strip()
        for line in (containers.REPO / "requirements-dev.txt").read_text().splitlines()
        if line.startswith("moto")
    )
    assert version("moto") == pinned, "moto changed: re-check training/standin/wiring.py"
    for name in wiring.REPLACED:
        assert callable(SageMakerResponse.__dict__.get(name)), f"moto has no {name} to wrap"
    for name in wiring.ADDED:  # still missing from moto, or the stand-in hides moto's own
        assert name not in SageMakerResponse.__dict__, f"moto now has {name}"
    hooks = wiring.install(standin=None)
    try:
        assert all(SageMakerResponse.__dict__[n].__module__ == wiring.__name__
                   for n in wiring.REPLACED + wiring.ADDED)  # fmt: skip
    finally:
        hooks.restore()
    assert all(name not in SageMakerResponse.__dict__ for name in wiring.ADDED)
