"""Local mode: the SageMaker contract emulated on this machine, then the same report code."""

import json
import shutil

import pytest

from training.launch.__main__ import main as launch
from training.report import compare


@pytest.mark.slow
def test_local_run_emulates_the_container_and_writes_a_report(tiny_run, tiny_splits, tmp_path):
    run_dir = tiny_run  # make train-local HP="<tiny.py's TINY>"
    opt_ml = run_dir / "opt_ml"
    assert (opt_ml / "input" / "data" / "train").resolve() == (tiny_splits / "train_full").resolve()
    hps = json.loads((opt_ml / "input" / "config" / "hyperparameters.json").read_text())
    assert hps["image_size"] == "32" and hps["weights"] == "none"  # strings, as SageMaker writes
    # One copy of the model: unpacked from the archive SageMaker's way packed it (contents at
    # the top), the archive and the instance's folders gone, and no checkpoints kept.
    assert [p.name for p in (run_dir / "model").iterdir()] == ["model.h5"]
    assert {p.name for p in (run_dir / "output").iterdir()} == {
        "metrics.json", "history.csv", "config.json"}  # fmt: skip
    assert not list(run_dir.glob("*.tar.gz"))
    for gone in ("model", "output/data", "checkpoints"):
        assert not (opt_ml / gone).exists(), f"opt_ml/{gone} was kept"
    report = json.loads((run_dir / "report.json").read_text())
    assert report["mode"] == "local" and report["experiment"] == "smoke"
    assert report["training_seconds"] > 0
    markdown = (run_dir / "report.md").read_text()
    assert "| fine_tuned |" in markdown and "![accuracy](accuracy.png)" in markdown
    assert "0.9665" in markdown  # the seed's table is shown for reference
    import tensorflow as tf

    expected = "CPU" if not tf.config.list_physical_devices("GPU") else "NVIDIA"
    assert report["devices"] and f"device(s): {expected}" in markdown  # which device ran
    assert "[epoch] phase=frozen epoch=1/1" in (run_dir / "train.log").read_text()

    runs = tmp_path / "runs"
    shutil.copytree(run_dir, runs / run_dir.name)
    assert compare.main([str(runs)]) == 0
    table = (runs / "report.md").read_text()
    assert "| seed study | small |" in table and run_dir.name in table


def test_a_failing_job_reports_its_reason(tiny_splits, tmp_path, capsys):
    code = launch(
        [
            "local",
            "--hp",
            "unfreeze_from=block4_conv1",
            "image_size=32",
            "--splits",
            str(tmp_path / "empty"),
            "--runs",
            str(tmp_path / "runs"),
            "--experiment",
            "small",
        ]
    )
    assert code == 2 and "no prepared data" in capsys.readouterr().err


def test_unknown_experiment_and_bad_override_fail_before_running(tmp_path, capsys):
    assert launch(["local", "--experiment", "nope"]) == 2
    assert launch(["local", "--hp", "batch_size=0"]) == 2
    err = capsys.readouterr().err
    assert "unknown experiment 'nope'" in err and "batch_size=0 must be at least 1" in err


def test_report_without_runs_says_what_to_do(tmp_path, capsys):
    assert compare.main([str(tmp_path)]) == 2
    assert "make train-local" in capsys.readouterr().err


def test_epoch_times_are_the_seeds_on_the_k80_estimated_elsewhere_and_measured_when_benched(
    tmp_path,
):
    from training.common.instances import lookup
    from training.launch import capacity, timing
    from training.launch.experiments import load

    small = load("small")
    p2, g5, m5 = lookup("ml.p2.xlarge"), lookup("ml.g5.xlarge"), lookup("ml.m5.xlarge")
    seed_based = capacity.estimate(small, 4000, p2, 1)
    assert seed_based.epoch_seconds_source == "the seed's K80 epochs"
    # 30 × 36.5 s + 50 × 41.5 s of K80 epochs, plus start-up: the calibration point itself
    assert seed_based.expected_seconds == pytest.approx(300 + 30 * 36.5 + 50 * 41.5)
    line = seed_based.line()
    assert "$1.125/h" in line and "with spot (assumed 70% saving" in line
    # Elsewhere: the same work at the GPU's peak float32 rate, the K80's achieved share of it.
    g5_cost = capacity.estimate(small, 4000, g5, 1)
    speedup = timing.PEAK_FP32_TFLOPS["A10G"] / timing.PEAK_FP32_TFLOPS["K80"]
    k80_epochs = 30 * 36.5 + 50 * 41.5
    assert g5_cost.expected_seconds == pytest.approx(300 + k80_epochs / speedup)
    assert "estimated" in g5_cost.epoch_seconds_source
    # More work (full's 21,000 images, a larger image, more unfrozen layers) takes longer.
    frozen, fine, _ = timing.epoch_seconds(g5, small.hp, 4000)
    bigger = load("small", ["image_size=224", "unfreeze_from=block3_conv1"]).hp
    frozen_big, fine_big, _ = timing.epoch_seconds(g5, bigger, 21000)
    assert frozen_big > frozen * 5 and fine_big > fine * 5
    assert capacity.estimate(small, 4000, m5, 1).expected_seconds is None  # no GPU: unknown
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"epoch_seconds_by_instance": {
        "ml.g5.xlarge": {"frozen": 0.001, "fine_tuned": 0.002, "validation": 0.0005}}}))  # fmt: skip
    frozen, fine, source = timing.epoch_seconds(g5, small.hp, 4000, bench_file=bench)
    assert (frozen, fine) == pytest.approx((4 + 1, 8 + 1)) and "make bench" in source


def test_docker_mode_without_an_engine_says_so(tiny_splits, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")  # nothing listens
    code = launch(
        [
            "local",
            "--mode",
            "docker",
            "--splits",
            str(tiny_splits),
            "--runs",
            str(tmp_path / "runs"),
        ]
    )
    assert code == 2
    assert "MODE=docker needs a running Docker engine" in capsys.readouterr().err


def test_docker_mode_uses_the_sdks_local_container_with_the_clouds_tf_version(
    tiny_splits, tmp_path
):
    from sagemaker.train.model_trainer import Mode

    from training.launch import docker_mode
    from training.launch.experiments import load
    from training.launch.request import RunRequest, run_settings
    from training.launch.spec import local_spec

    small = load("small", ["epochs_frozen=1"])
    image = docker_mode.local_image(small, "us-east-1", gpu=False)
    assert image.endswith("tensorflow-training:2.11-cpu-py39")  # P2's TF, CPU flavour
    manifest = json.loads((tiny_splits / "manifest.json").read_text())
    request = RunRequest("local", small, run_settings(small, manifest, 1), (), 1,
                         splits=tiny_splits, mode="docker")  # fmt: skip
    spec = local_spec(request, tmp_path / "run", image=image)
    trainer, inputs = docker_mode.build_trainer(spec, gpu=False)
    assert trainer.training_mode == Mode.LOCAL_CONTAINER
    assert trainer.compute.instance_type == "local_cpu"
    assert trainer.training_image == image
    assert trainer.hyperparameters["epochs_frozen"] == "1"
    assert trainer.hyperparameters["checkpoint_dir"] == "/opt/ml/checkpoints"  # the container's
    assert trainer.hyperparameters["dataset_digest"] == manifest["dataset_digest"]
    assert {i.channel_name: i.data_source for i in inputs}["train"] == str(
        (tiny_splits / "train_small").resolve()
    )
