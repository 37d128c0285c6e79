"""make predict: a run's model classifies a folder or zip into a Kaggle Redux submission file."""

import csv
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import tensorflow as tf
from vgg_transfer import model as vgg

from training.predict.__main__ import main as predict

REPO = Path(__file__).resolve().parents[2]
COMPAT_PYTHON = REPO / ".venv-compat" / "bin" / "python"


def kaggle_test_images(folder: Path, count: int = 12) -> Path:
    """Kaggle's test set is 1.jpg … 12500.jpg: warm (cat-like) and cool (dog-like) images here."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, count + 1):
        rgb = (200, 120, 60) if i % 2 else (60, 110, 200)
        pixels = np.clip(np.array(rgb)[None, None] + rng.normal(0, 20, (40, 48, 3)), 0, 255)
        (folder / f"{i}.jpg").write_bytes(tf.io.encode_jpeg(pixels.astype(np.uint8)).numpy())
    return folder


def trained_run(run: Path, size: int = 32) -> Path:
    """A run folder whose model.h5 was trained here for a few steps on warm-vs-cool images."""
    tf.keras.utils.set_random_seed(0)
    model = vgg.build_model(size, "rescale", "none")
    vgg.freeze_conv_base(model)
    vgg.compile_model(model, tf.keras.optimizers.Adam(1e-3))
    rng = np.random.default_rng(1)
    labels = np.arange(32) % 2
    colours = np.where(labels[:, None] == 1, [60, 110, 200], [200, 120, 60])
    images = np.clip(colours[:, None, None, :] + rng.normal(0, 20, (32, size, size, 3)), 0, 255)
    model.fit(images.astype(np.float32), labels.astype(np.float32), epochs=3, verbose=0)
    vgg.save_model(model, str(run / "model"))
    return run


def read_predictions(path: Path) -> dict:
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["id", "label"]
    return {row["id"]: float(row["label"]) for row in rows}


@pytest.mark.slow
def test_a_folder_becomes_a_submission_with_a_row_for_every_image(tmp_path, capsys):
    run = trained_run(tmp_path / "runs" / "job")
    images = kaggle_test_images(tmp_path / "test")
    (images / "7.jpg").write_bytes((images / "7.jpg").read_bytes()[:300])  # cut short
    (images / "notes.txt").write_text("not an image")

    assert predict(["--run", str(run), "--images", str(images)]) == 0
    out = capsys.readouterr()
    predictions = read_predictions(run / "predictions.csv")
    # Redux is scored by log loss over every test id: the image that does not decode gets 0.5.
    assert sorted(predictions, key=int) == [str(i) for i in range(1, 13)]
    assert predictions["7"] == 0.5
    assert all(0.0 <= p <= 1.0 for p in predictions.values())
    assert "7.jpg" in out.err and "does not decode" in out.err
    assert "12 rows" in out.out and "11 images classified" in out.out
    assert "1 did not decode" in out.out
    # the model learned warm = cat, cool = dog: even ids (cool) should score higher
    evens = np.mean([p for i, p in predictions.items() if int(i) % 2 == 0])
    odds = np.mean([p for i, p in predictions.items() if int(i) % 2 == 1])
    assert evens > odds


def test_clip_keeps_every_probability_off_zero_and_one(tmp_path, capsys):
    """Log loss charges a confident mistake without bound: CLIP=0.005 caps it near 5.3."""
    model = vgg.build_model(32, "rescale", "none")
    model.get_layer("prediction").bias.assign([12.0])  # sure it is a dog: P(dog) ≈ 0.999994
    vgg.save_model(model, str(tmp_path / "run" / "model"))
    images = kaggle_test_images(tmp_path / "test", count=3)
    run = ["--run", str(tmp_path / "run"), "--images", str(images)]
    assert predict(run) == 0
    assert all(p > 0.9999 for p in read_predictions(tmp_path / "run" / "predictions.csv").values())
    assert predict([*run, "--clip", "0.005", "--out", str(tmp_path / "clipped.csv")]) == 0
    assert set(read_predictions(tmp_path / "clipped.csv").values()) == {0.995}
    assert "clipped to [0.005, 0.995]" in capsys.readouterr().out
    with pytest.raises(SystemExit) as refused:  # argparse: usage and one error line
        predict([*run, "--clip", "0.7"])
    assert refused.value.code == 2 and "CLIP=0.7: expected a number in [0, 0.5)" in (
        capsys.readouterr().err
    )


@pytest.mark.slow
def test_kaggles_test_zip_streams_in_batches(tmp_path, capsys, monkeypatch):
    from training.predict import submission as module

    run = trained_run(tmp_path / "run")
    images = kaggle_test_images(tmp_path / "test", count=10)
    archive = tmp_path / "test.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted(images.iterdir()):
            zipped.write(path, f"test/{path.name}")
    seen_batches = []  # batches of 3 here; of 64 for Kaggle's 12,500 images
    real_batches = module.batches
    # Project patch 3 of 4: the batches a stream is cut into are what keeps memory flat, and
    # nothing outside predict() shows them.
    monkeypatch.setattr(
        module,
        "batches",
        lambda stream, size: (seen_batches.append(len(b)) or b for b in real_batches(stream, 3)),
    )
    out = tmp_path / "submission.csv"
    assert predict(["--run", str(run), "--images", str(archive), "--out", str(out)]) == 0
    assert seen_batches == [3, 3, 3, 1]
    assert sorted(read_predictions(out), key=int) == [str(i) for i in range(1, 11)]


def test_missing_run_or_images_is_one_line(tmp_path, capsys):
    assert predict(["--run", str(tmp_path / "nope"), "--images", str(tmp_path)]) == 2
    assert "no model at" in capsys.readouterr().err
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.h5").write_bytes(b"not read: the images are checked first")
    assert predict(["--run", str(tmp_path), "--images", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert predict([]) == 2
    assert "make predict RUN=" in capsys.readouterr().err


SAVE_AND_PREDICT = """
import sys
from pathlib import Path
import numpy as np
from tensorflow import keras
from vgg_transfer import channels, model as vgg
out, images = Path(sys.argv[1]), Path(sys.argv[2])
paths = sorted(images.glob("*.jpg"), key=lambda p: int(p.stem))
pixels = np.stack([channels.image_from_bytes(p.read_bytes(), 32).numpy() for p in paths])
for precision in ("float32", "mixed"):
    vgg.set_precision(precision == "mixed", on_gpu=True)  # mixed: float16, as on the P2's K80
    keras.utils.set_random_seed(0)
    model = vgg.build_model(32, "vgg16", "none", dropout=0.5)
    vgg.save_model(model, str(out / precision / "model"))
    np.save(out / precision / "expected.npy", model.predict(pixels.astype("float32"), verbose=0))
# What jobs before this release saved: mixed layer policies in the .h5 itself.
keras.Model.save(model, str(out / "legacy.h5"))
"""
SAVERS = {"keras 2 (TF 2.12, as the P2 image)": COMPAT_PYTHON, "keras 3 (TF 2.21)": None}


@pytest.fixture(scope="module", params=list(SAVERS))
def saved_models(request, tmp_path_factory):
    """Models saved by the job's own save_model under one Keras, float32 and mixed, with the
    images and what each predicted there; one process per Keras version."""
    python = SAVERS[request.param] or Path(sys.executable)
    if not python.exists():
        pytest.skip("needs .venv-compat (make setup-compat)")
    root = tmp_path_factory.mktemp("saved")
    images = kaggle_test_images(root / "test", count=6)
    saved = subprocess.run([str(python), "-c", SAVE_AND_PREDICT, str(root), str(images)],
                           cwd=REPO, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert saved.returncode == 0, saved.stderr[-2000:]
    return request.param, root, images


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["float32", "mixed"])
def test_models_saved_under_keras_2_and_3_in_either_precision_predict_under_keras_3(
    saved_models, precision
):
    keras, root, images = saved_models
    run = root / precision
    assert predict(["--run", str(run), "--images", str(images)]) == 0
    predictions = read_predictions(run / "predictions.csv")
    ours = np.array([predictions[str(i)] for i in range(1, 7)])
    # float32 here against what the model gave where it was saved (float16 when mixed)
    tolerance = 1e-5 if precision == "float32" else 2e-3
    np.testing.assert_allclose(ours, np.load(run / "expected.npy").reshape(-1), atol=tolerance,
                               err_msg=f"saved under {keras}")  # fmt: skip


@pytest.mark.slow
def test_a_model_saved_with_mixed_layers_by_an_older_job_still_loads(saved_models):
    """Jobs before this release saved mixed layer policies; Keras 2 writes them as ``Policy``
    objects, which Keras 3 cannot read on its own ('str' object has no attribute
    'quantization_mode')."""
    keras, root, _ = saved_models
    legacy = root / "legacy.h5"
    if keras.startswith("keras 2"):
        assert '"class_name": "Policy"' in str(h5py.File(legacy, "r").attrs["model_config"])
    loaded = vgg.load_model(str(legacy))
    assert not vgg.is_mixed(loaded), "predictions would run in float16 on the CPU"


@pytest.mark.slow
def test_an_earlier_submission_is_never_replaced_unasked_and_files_are_readable(tmp_path, capsys):
    run = trained_run(tmp_path / "run")
    images = kaggle_test_images(tmp_path / "test", count=3)
    args = ["--run", str(run), "--images", str(images)]
    assert predict(args) == 0
    first = (run / "predictions.csv").read_text()
    (run / "predictions.csv").write_text(first + "# the user's own edit\n")
    assert predict(args) == 0
    out = capsys.readouterr().out
    assert "predictions.csv is an earlier submission, kept: writing predictions-2.csv" in out
    assert (run / "predictions.csv").read_text().endswith("# the user's own edit\n")
    assert (run / "predictions-2.csv").read_text() == first
    assert oct((run / "predictions-2.csv").stat().st_mode & 0o777) == oct(0o666 & ~umask())
    named = tmp_path / "submission.csv"
    named.write_text("old")
    assert predict([*args, "--out", str(named)]) == 0
    assert f"OUT={named} exists: it will be replaced" in capsys.readouterr().out
    assert named.read_text() == first


def umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_run_and_images_are_checked_before_tensorflow_is_imported(tmp_path):
    code = (
        "import sys\nfrom training.predict.__main__ import main\n"
        f"rc = main(['--run', {str(tmp_path)!r}, '--images', {str(tmp_path)!r}])\n"
        "print(rc, 'tensorflow' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.stdout.split() == ["2", "False"], done.stderr
    assert "no model at" in done.stderr and done.stderr.count("\n") == 1
