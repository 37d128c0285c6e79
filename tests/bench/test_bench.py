"""make bench's script at tiny sizes: every figure comes from raw repeats kept in bench.json."""

import json
import statistics

import pytest

from training import bench


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
            bench.WARP_BATCH * 6 / statistics.median(row["seconds"])
        )
    assert warp["gather warp, XLA-compiled"]["max_difference_from_before"] < 0.05
    assert warp[bench.KEPT_WARP]["max_difference_from_before"] is None  # draws its own
    assert warp["ImageProjectiveTransformV3, uint8"]["max_difference_from_before"] > 0.5
    assert variants["float32"]["ratio_to_float32"] == 1.0
    assert all(len(v["seconds"]) == repeats for v in variants.values())
    assert result["machine"]["cores"] >= 1 and result["machine"]["tensorflow"]
    table = (tmp_path / "bench.md").read_text()
    assert f"**{pipeline['ratio']:.1f}×**" in table
    assert "1. input pipeline" in capsys.readouterr().out
