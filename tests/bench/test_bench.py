"""make bench's script at tiny sizes: every figure comes from raw repeats kept in bench.json."""

import json
import statistics

import pytest

from training.bench import __main__ as bench
from training.bench import warp as warp_module
from training.bench.pipeline import pipeline


@pytest.mark.slow
def test_quick_bench_records_every_repeat_and_derives_each_figure(tmp_path, capsys):
    assert bench.main(["--device", "quick", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "bench.json").read_text())
    repeats = result["repeats"]
    pipeline = result["pipeline"]
    for key in ("decode_seconds", "epoch_seconds", "epoch_one_thread_seconds", "seed_seconds"):
        assert len(pipeline[key]) == repeats and all(s > 0 for s in pipeline[key])
    # per epoch: one cached epoch plus the one-time decode spread over the phase's epochs
    per_epoch = (
        statistics.median(pipeline["epoch_seconds"])
        + statistics.median(pipeline["decode_seconds"]) / pipeline["epochs_amortised"]
    )
    assert pipeline["ours_images_per_second"] == pytest.approx(pipeline["images"] / per_epoch)
    assert pipeline["cache_bytes"] == pipeline["images"] * 150 * 150 * 3
    assert pipeline["ratio"] == pytest.approx(
        pipeline["ours_images_per_second"] / pipeline["seed_images_per_second"]
    )
    frozen = result["frozen"]
    assert len(frozen["seed_way_epoch_seconds"]) == repeats
    assert len(frozen["cached_extract_seconds"]) == repeats
    variants = result["fine_tuning"]["variants"]
    assert set(variants) == {"float32", "augmented", "mixed_precision", "xla", "xla_augmented"}
    bottleneck = result["bottleneck"]
    for name in ("augmented", "xla_augmented"):
        row = bottleneck[name]
        assert row["step_images_per_second"] == variants[name]["images_per_second"]
        assert row["input_images_per_second"] == pipeline["training_input_images_per_second"]
    assert len(pipeline["unwarped_epoch_seconds"]) == repeats
    # the warp alone: every design measured, compared to the warp before, the kept one exact
    warp = pipeline["warp"]
    before = warp["ImageProjectiveTransformV3, float32 (before)"]
    assert before["ratio_to_before"] == 1.0 and before["max_difference_from_before"] == 0.0
    for row in warp.values():
        assert len(row["seconds"]) == repeats
        assert row["images_per_second"] == pytest.approx(
            warp_module.WARP_BATCH * 6 / statistics.median(row["seconds"])
        )
    assert warp["gather warp, XLA-compiled"]["max_difference_from_before"] < 0.05
    assert warp[warp_module.KEPT_WARP]["max_difference_from_before"] is None  # draws its own
    assert warp["ImageProjectiveTransformV3, uint8"]["max_difference_from_before"] > 0.5
    assert variants["float32"]["ratio_to_float32"] == 1.0
    assert all(len(v["seconds"]) == repeats for v in variants.values())
    assert result["machine"]["cores"] >= 1 and result["machine"]["tensorflow"]
    table = (tmp_path / "bench.md").read_text()
    assert f"**{pipeline['ratio']:.1f}×**" in table
    assert "1. input pipeline" in capsys.readouterr().out


def test_the_benchs_pipeline_augments_in_the_pipeline_from_the_jobs_stages(tiny_splits, tmp_path):
    """make bench warps in the pipeline, as the seed's generator did; the job does not."""
    import numpy as np
    import tensorflow as tf
    from vgg_transfer import batching
    from vgg_transfer.cache import build_cache
    from vgg_transfer.channels import read_split
    from vgg_transfer.config import Hyperparameters

    cache = build_cache(read_split("train", str(tiny_splits / "train_full")), 24, str(tmp_path))
    known = {image.tobytes() for image in cache.images}
    hp = Hyperparameters(batch_size=8, seed=0)
    for augment in (True, False):
        batch, _ = next(iter(pipeline(cache, hp, augment=augment)))
        assert batch.dtype == tf.float32
        unchanged = [image.astype(np.uint8).tobytes() in known for image in batch.numpy()]
        assert not any(unchanged) if augment else all(unchanged)
    job, _ = next(iter(batching.make_dataset(cache, hp, training=True)))
    assert all(image.astype(np.uint8).tobytes() in known for image in job.numpy())
