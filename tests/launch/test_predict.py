"""make predict: a run's model classifies a folder or zip into a Kaggle Redux submission file."""

import csv
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from vgg_transfer import model as vgg

from training.predict import main as predict

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
def test_a_folder_becomes_a_submission_and_a_corrupt_image_is_named(tmp_path, capsys):
    run = trained_run(tmp_path / "runs" / "job")
    images = kaggle_test_images(tmp_path / "test")
    (images / "7.jpg").write_bytes((images / "7.jpg").read_bytes()[:300])  # cut short
    (images / "notes.txt").write_text("not an image")

    assert predict(["--run", str(run), "--images", str(images)]) == 0
    out = capsys.readouterr()
    predictions = read_predictions(run / "predictions.csv")
    assert sorted(predictions, key=int) == [str(i) for i in range(1, 13) if i != 7]
    assert all(0.0 <= p <= 1.0 for p in predictions.values())
    assert "7.jpg" in out.err and "skipped" in out.err
    assert "11 images" in out.out and "1 skipped" in out.out
    # the model learned warm = cat, cool = dog: even ids (cool) should score higher
    evens = np.mean([p for i, p in predictions.items() if int(i) % 2 == 0])
    odds = np.mean([p for i, p in predictions.items() if int(i) % 2 == 1])
    assert evens > odds


@pytest.mark.slow
def test_kaggles_test_zip_streams_in_batches(tmp_path, capsys, monkeypatch):
    from training import predict as module

    run = trained_run(tmp_path / "run")
    images = kaggle_test_images(tmp_path / "test", count=10)
    archive = tmp_path / "test.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted(images.iterdir()):
            zipped.write(path, f"test/{path.name}")
    seen_batches = []  # batches of 3 here; of 64 for Kaggle's 12,500 images
    real_batches = module.batches
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
    assert predict(["--run", str(tmp_path), "--images", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert predict([]) == 2
    assert "make predict RUN=" in capsys.readouterr().err


SAVE_AND_PREDICT_WITH_KERAS_2 = """
import sys
from pathlib import Path
import numpy as np
from vgg_transfer import data, model as vgg
model = vgg.build_model(32, "vgg16", "none", dropout=0.5)
vgg.save_model(model, sys.argv[1] + "/model")
paths = sorted(Path(sys.argv[2]).glob("*.jpg"), key=lambda p: int(p.stem))
pixels = np.stack([data.image_from_bytes(p.read_bytes(), 32).numpy() for p in paths])
np.save(sys.argv[1] + "/expected.npy", model.predict(pixels.astype("float32"), verbose=0))
"""


@pytest.mark.slow
@pytest.mark.skipif(not COMPAT_PYTHON.exists(), reason="needs .venv-compat (make setup-compat)")
def test_a_model_saved_under_tf_212_predicts_the_same_under_tf_221(tmp_path):
    images = kaggle_test_images(tmp_path / "test", count=6)
    run = tmp_path / "run"
    saved = subprocess.run(
        [str(COMPAT_PYTHON), "-c", SAVE_AND_PREDICT_WITH_KERAS_2, str(run), str(images)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert saved.returncode == 0, saved.stderr[-2000:]
    assert predict(["--run", str(run), "--images", str(images)]) == 0
    predictions = read_predictions(run / "predictions.csv")
    ours = np.array([predictions[str(i)] for i in range(1, 7)])
    np.testing.assert_allclose(ours, np.load(run / "expected.npy").reshape(-1), atol=1e-5)
