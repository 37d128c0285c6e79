"""The training script end to end on tiny generated data: contract outputs, freezing, resume,
multi-worker. Each run is seconds; together they are the slow part of the suite."""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
import train
from job_helpers import TRAIN_SCRIPT, run_script, write_legacy_weights
from vgg_transfer import augmentation, phases
from vgg_transfer import model as vgg

pytestmark = pytest.mark.slow

CONV_BLOCKS_FROZEN = ("block1_conv1", "block2_conv2", "block3_conv3")
CONV_BLOCKS_TUNED = ("block4_conv1", "block5_conv3")


def counting_augmentation(monkeypatch) -> list:
    """Every call of the seed's augmentation layer: whether it was in training."""
    calls = []
    real_call = augmentation.SeedAugmentation.call

    def counting(self, images, training=None):
        calls.append(bool(training))
        return real_call(self, images, training=training)

    # Project patch 2 of 4: whether Keras calls the layer in training mode is not visible from
    # outside the model; counting its calls is how the test sees it.
    monkeypatch.setattr(augmentation.SeedAugmentation, "call", counting)
    return calls


def test_contract_outputs_after_a_one_plus_one_epoch_run(job_args, tmp_path, capsys, monkeypatch):
    augmented = counting_augmentation(monkeypatch)
    assert train.main(job_args()) == 0
    # fit() trains behind the seed's augmentation; the saved model takes images as they are.
    assert True in augmented, "training ran without the seed's augmentation"
    saved = tf.keras.models.load_model(str(tmp_path / "model" / "model.h5"), compile=False)
    assert not [layer for layer in saved.layers if "augment" in layer.name]
    metrics = json.loads((tmp_path / "output" / "metrics.json").read_text())
    for phase in ("frozen", "fine_tuned"):
        row = metrics["phases"][phase]
        for key in ("test_accuracy", "test_loss", "best_val_accuracy", "best_epoch", "epochs_run",
                    "seconds", "images_per_second", "confusion_matrix"):  # fmt: skip
            assert key in row, f"metrics.json lacks phases.{phase}.{key}"
        assert row["epochs_run"] == 1
        assert sum(map(sum, row["confusion_matrix"]["rows_true_columns_predicted"])) == 12
    assert metrics["images"]["train"] == {"cats": 12, "dogs": 12, "total": 24}
    assert metrics["versions"]["tensorflow"] == tf.__version__
    assert metrics["config"]["image_size"] == 32
    with open(tmp_path / "output" / "history.csv") as handle:
        assert [row["phase"] for row in csv.DictReader(handle)] == ["frozen", "fine_tuned"]
    config = json.loads((tmp_path / "output" / "config.json").read_text())
    assert config["hyperparameters"]["weights"] == "none"
    log = capsys.readouterr().out
    assert "[epoch] phase=frozen epoch=1/1 loss=" in log
    assert "[test] phase=fine_tuned test_loss=" in log


def test_a_tuning_jobs_training_job_as_aws_toolkit_runs_it(job_args, tmp_path, monkeypatch, capsys):
    """AWS's TF toolkit runs a tuning job's training job with `--model_dir None/<job>/model`,
    SageMaker sends `_tuning_objective_metric` in hyperparameters.json, and every training job
    of the tuning job shares one checkpoint location."""
    job = "vgg-t-001-0a1b2c3d"
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "hyperparameters.json").write_text(
        json.dumps({"_tuning_objective_metric": "fine_tuned:best_val_accuracy"})
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SM_MODEL_DIR", str(tmp_path / "sm-model"))
    monkeypatch.setenv("SM_INPUT_CONFIG_DIR", str(config_dir))
    monkeypatch.setenv("TRAINING_JOB_NAME", job)
    augmented = counting_augmentation(monkeypatch)
    args = job_args(model_dir=f"None/{job}/model", epochs_fine_tuned=3, augment="false")
    assert train.main(args) == 0
    log = capsys.readouterr().out
    assert True not in augmented, "augment=false still augmented"
    assert (tmp_path / "sm-model" / "model.h5").exists(), "the model missed SM_MODEL_DIR"
    assert not (tmp_path / "None").exists(), "the job saved under the toolkit's model_dir"
    assert f"checkpoints in {tmp_path / 'checkpoints' / job}" in log
    assert not (tmp_path / "checkpoints" / job).exists(), "a finished tuning job kept its folder"
    # Every epoch line carries the phase's best val_accuracy so far: the tuning objective.
    with open(tmp_path / "output" / "history.csv") as handle:
        rows = [r for r in csv.DictReader(handle) if r["phase"] == "fine_tuned"]
    logged = [float(line.split("best_val_accuracy=")[1].split()[0]) for line in log.splitlines()
              if line.startswith("[epoch] phase=fine_tuned")]  # fmt: skip
    running_best = np.maximum.accumulate([float(r["val_accuracy"]) for r in rows])
    np.testing.assert_allclose(logged, running_best, atol=1e-6)


def test_freezing_is_real_in_both_phases(job_args, tmp_path):
    """keras#8792: frozen layers must not move. Weights come from a file, so we know them."""
    tf.keras.utils.set_random_seed(3)
    base = tf.keras.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))
    weights = tmp_path / "vgg16_notop.h5"
    write_legacy_weights(base, weights)
    original = {layer.name: layer.get_weights()[0] for layer in base.layers if layer.weights}
    assert train.main(job_args(weights=weights)) == 0

    frozen_state = json.loads((tmp_path / "checkpoints" / "frozen" / "state.json").read_text())
    after_frozen = vgg.build_model(32, "rescale", "none")
    phases.load_weights(
        after_frozen, str(tmp_path / "checkpoints/frozen" / frozen_state["best_weights"])
    )
    for name in CONV_BLOCKS_FROZEN + CONV_BLOCKS_TUNED:
        np.testing.assert_array_equal(
            after_frozen.get_layer(name).get_weights()[0], original[name],
            err_msg=f"{name} changed during the frozen phase",
        )  # fmt: skip

    final = vgg.load_model(str(tmp_path / "model" / "model.h5"))
    for name in CONV_BLOCKS_FROZEN:
        np.testing.assert_array_equal(final.get_layer(name).get_weights()[0], original[name],
                                      err_msg=f"{name} changed during fine-tuning")  # fmt: skip
    for name in CONV_BLOCKS_TUNED:
        assert not np.array_equal(final.get_layer(name).get_weights()[0], original[name]), (
            f"{name} did not train during fine-tuning"
        )


def test_feature_caching_trains_the_head_once_and_a_rerun_skips_it(job_args, tmp_path, capsys):
    args = job_args(cache_features="true", epochs_fine_tuned=0)
    assert train.main(args) == 0
    first = json.loads((tmp_path / "output" / "metrics.json").read_text())
    assert first["frozen_phase_augmented"] is False
    assert first["phases"]["frozen"]["epochs_run"] == 1
    assert first["phases"]["frozen"]["seconds"] > 0
    capsys.readouterr()

    assert train.main(args) == 0  # same checkpoints: the finished phase is not redone
    again = json.loads((tmp_path / "output" / "metrics.json").read_text())
    assert "frozen: finished in an earlier run" in capsys.readouterr().out
    assert again["phases"]["frozen"]["seconds"] == first["phases"]["frozen"]["seconds"]


def wait_for(predicate, timeout: float, process: subprocess.Popen) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if process.poll() is not None:
            out = process.stdout.read() if process.stdout else ""
            pytest.fail(f"job ended early (exit {process.returncode}): {out[-2000:]}")
        time.sleep(0.05)
    pytest.fail("timed out waiting for the job")


def fine_tuned_epochs_done(checkpoints) -> int:
    state = checkpoints / "fine_tuned" / "state.json"
    return json.loads(state.read_text())["epochs_done"] if state.exists() else 0


def interrupt_during_fine_tuning(
    args, checkpoints, after_epochs: int, signum: int = signal.SIGTERM
) -> int:
    """Starts the job, sends ``signum`` once fine-tuning finished ``after_epochs`` epochs, and
    returns how many fine-tuning epochs its checkpoint records."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("SM_MODEL_DIR", None)
    process = subprocess.Popen([sys.executable, str(TRAIN_SCRIPT), *args], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    wait_for(lambda: fine_tuned_epochs_done(checkpoints) >= after_epochs, 240, process)
    # Paused at once, so that a few epochs suffice however fast they go; the signal lands when
    # the job goes on.
    process.send_signal(signal.SIGSTOP)
    process.send_signal(signum)  # SIGTERM: what SageMaker sends on a spot interruption
    process.send_signal(signal.SIGCONT)
    output, _ = process.communicate(timeout=60)
    if signum == signal.SIGTERM:
        assert process.returncode == 128 + signal.SIGTERM, output[-2000:]
        assert "SIGTERM received" in output
    else:
        assert process.returncode == -signum, output[-2000:]
    return fine_tuned_epochs_done(checkpoints)


def history_epochs(output_dir) -> list:
    with open(output_dir / "history.csv") as handle:
        return [(r["phase"], int(r["epoch"])) for r in csv.DictReader(handle)]


def test_interrupted_runs_resume_with_the_same_epoch_counts(job_args, tmp_path):
    """A run stopped by SIGTERM (a spot reclaim) resumes inside its phase. Its restart is then
    killed outright, as it may be under ModelTrainer (where the SIGTERM handler may never run),
    with state.json naming a weights file cut short (SageMaker's checkpoint upload is
    asynchronous): the next run still ends with every epoch, so correctness rests on the
    checkpoint files alone."""
    args = [str(a) for a in job_args(epochs_frozen=2, epochs_fine_tuned=5)]
    checkpoints = tmp_path / "checkpoints"
    first = interrupt_during_fine_tuning(args, checkpoints, 2)
    second = interrupt_during_fine_tuning(args, checkpoints, first + 1, signal.SIGKILL)
    assert first < second < 5, "a run finished before it could be interrupted"
    state = json.loads((checkpoints / "fine_tuned" / "state.json").read_text())
    named = checkpoints / "fine_tuned" / state["last_weights"]
    named.write_bytes(named.read_bytes()[:1000])  # an upload cut short

    resumed = run_script(args, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Traceback" not in resumed.stderr
    assert "frozen: finished in an earlier run" in resumed.stdout
    assert f"instead of {second}" in resumed.stdout  # the newest complete epoch instead
    metrics = json.loads((tmp_path / "output" / "metrics.json").read_text())
    assert metrics["phases"]["frozen"]["epochs_run"] == 2
    assert metrics["phases"]["fine_tuned"]["epochs_run"] == 5
    epochs = history_epochs(tmp_path / "output")
    assert epochs == [("frozen", 1), ("frozen", 2)] + [("fine_tuned", i) for i in range(1, 6)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def start_workers(job_args, tmp_path) -> list:
    workers = [f"localhost:{free_port()}", f"localhost:{free_port()}"]
    processes = []
    for index in range(2):
        args = job_args(
            distribution="multi_worker",
            model_dir=tmp_path / f"model-{index}",
            output_data_dir=tmp_path / f"output-{index}",
        )
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = dict(os.environ, TF_CONFIG=json.dumps(tf_config), TF_CPP_MIN_LOG_LEVEL="2",
                   PYTHONUNBUFFERED="1")  # fmt: skip
        env.pop("SM_MODEL_DIR", None)
        processes.append(subprocess.Popen([sys.executable, str(TRAIN_SCRIPT), *map(str, args)],
                                          env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True))  # fmt: skip
    return processes


def test_two_worker_processes_train_one_model(job_args, tmp_path):
    processes = start_workers(job_args, tmp_path)
    outputs = [p.communicate(timeout=300)[0] for p in processes]
    for index, (process, output) in enumerate(zip(processes, outputs, strict=True)):
        assert process.returncode == 0, f"worker {index}: {output[-3000:]}"
    assert "multi_worker x2" in outputs[0]
    metrics = json.loads((tmp_path / "output-0" / "metrics.json").read_text())
    assert metrics["replicas"] == 2
    assert metrics["phases"]["fine_tuned"]["epochs_run"] == 1
    confusion = metrics["phases"]["fine_tuned"]["confusion_matrix"]["rows_true_columns_predicted"]
    assert sum(map(sum, confusion)) == 12, "the test set was not counted once across workers"
    correct = confusion[0][0] + confusion[1][1]
    assert metrics["phases"]["fine_tuned"]["test_accuracy"] == pytest.approx(correct / 12)
    assert not (tmp_path / "output-1" / "metrics.json").exists(), "a non-chief worker wrote outputs"
    # Keras warns its input "ran out of data" in a worker's first epoch; each worker still read
    # its whole share (12 of the 24 training images) in every epoch of both phases.
    for index, output in enumerate(outputs):
        counts = [line for line in output.splitlines() if line.startswith("[input]")]
        assert len(counts) == 2, f"worker {index}: {counts}"
        assert all(f"worker {index + 1}/2" in c and "read 12 training images (its whole share)"
                   in c for c in counts), counts  # fmt: skip
    # Both left together: neither waited out heartbeats to a peer that had already exited.
    for output in outputs:
        assert "CoordinationService/Heartbeat" not in output and "tasks have crashed" not in output
