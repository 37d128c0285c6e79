"""The job saves model.h5 in the TF 2.11 container (Keras 2); users load it with Keras 3."""

import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
COMPAT_PYTHON = REPO / ".venv-compat" / "bin" / "python"

SAVE_WITH_KERAS_2 = """
import sys
import numpy as np
from vgg_transfer import model as vgg
model = vgg.build_model(32, "vgg16", "none", dropout=0.5)
images = np.random.default_rng(0).uniform(0, 255, size=(4, 32, 32, 3)).astype("float32")
vgg.save_model(model, sys.argv[1])
np.save(sys.argv[1] + "/expected.npy", model.predict(images, verbose=0))
np.save(sys.argv[1] + "/images.npy", images)
"""


@pytest.mark.slow
@pytest.mark.skipif(not COMPAT_PYTHON.exists(), reason="needs .venv-compat (make setup-compat)")
def test_a_model_saved_by_keras_2_loads_and_predicts_the_same_in_keras_3(tmp_path):
    saved = subprocess.run(
        [str(COMPAT_PYTHON), "-c", SAVE_WITH_KERAS_2, str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert saved.returncode == 0, saved.stderr[-2000:]
    import keras
    from vgg_transfer import model as vgg

    assert keras.__version__.startswith("3.")
    loaded = vgg.load_model(str(tmp_path / "model.h5"))
    predictions = loaded.predict(np.load(tmp_path / "images.npy"), verbose=0)
    np.testing.assert_allclose(
        predictions, np.load(tmp_path / "expected.npy"), rtol=1e-4, atol=1e-6
    )
