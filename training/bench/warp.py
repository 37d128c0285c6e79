"""Row 1e: the warp alone, design by design, on batches of the cache."""

import numpy as np
from vgg_transfer import augmentation

from training.bench import Sizes, median_rate, timed

WARP_BATCH = 64
KEPT_WARP = "draws, matrices and gather warp in one XLA launch (kept)"
BEFORE = "ImageProjectiveTransformV3, float32 (before)"


def projective_warp(images, transforms, dtype: str = "float32"):
    """The warp before: ImageProjectiveTransformV3 (no XLA kernel) on float32, or on the uint8
    cache, whose output the op truncates to whole levels."""
    import tensorflow as tf

    images = tf.cast(images, dtype)
    warped = tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=tf.shape(images)[1:3],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="NEAREST",
    )
    return tf.cast(warped, tf.float32)


def bench_warp(cache_images: np.ndarray, sizes: Sizes, batches: int = 6) -> dict:
    """Each warp design on batches of the cache (150 px, 64 images, indices drawn afresh), in
    img/s on every core, and its largest difference from the warp before (ImageProjectiveTransformV3
    on float32, which the tests hold to ImageDataGenerator's transform)."""
    import tensorflow as tf

    cache = tf.constant(cache_images)
    size = cache_images.shape[1]
    rng = np.random.default_rng(0)

    def transforms(count):
        params = augmentation.random_parameters(count, size, size)
        return augmentation.affine_transforms(params, size, size)

    designs = warp_designs(cache)
    check_indices = tf.constant(np.arange(min(8, len(cache_images))), tf.int64)
    check_transforms = transforms(len(check_indices))
    reference = designs[BEFORE](check_indices, check_transforms).numpy()
    rows = {}
    for name, design in designs.items():
        step = tf.function(design)

        def run(step=step):
            for _ in range(batches):
                ix = tf.constant(rng.integers(0, len(cache_images), WARP_BATCH), tf.int64)
                step(ix, transforms(WARP_BATCH)).numpy()

        run()  # warm-up: traces, and compiles the XLA designs
        seconds = [timed(run) for _ in range(sizes.repeats)]
        difference = None
        if name != KEPT_WARP:
            warped = step(check_indices, check_transforms).numpy()
            difference = float(np.abs(warped - reference).max())
        rows[name] = {
            "seconds": seconds,
            "images_per_second": median_rate(batches * WARP_BATCH, seconds),
            "max_difference_from_before": difference,
        }
    before = rows[BEFORE]["images_per_second"]
    for row in rows.values():
        row["ratio_to_before"] = row["images_per_second"] / before
    return rows


def warp_designs(cache) -> dict:
    """Each design, as (indices into the cache, transforms) → warped float32 batch."""
    import tensorflow as tf

    warp_xla = tf.function(augmentation.warp, jit_compile=True)
    return {
        BEFORE: lambda ix, t: projective_warp(tf.gather(cache, ix), t),
        "ImageProjectiveTransformV3, uint8": lambda ix, t: projective_warp(
            tf.gather(cache, ix), t, "uint8"
        ),
        "gather warp, op by op": lambda ix, t: augmentation.warp(tf.gather(cache, ix), t),
        "gather warp, XLA-compiled": lambda ix, t: warp_xla(tf.gather(cache, ix), t),
        # the gather and the warp fused: neighbours read from the whole cache, no batch copy
        "gathered straight from the cache, XLA (cache as a tensor)": tf.function(
            lambda ix, t: augmentation.warp_from(cache, ix, t), jit_compile=True
        ),
        # what the job runs on CPUs: it draws its own parameters, so no difference is taken
        KEPT_WARP: lambda ix, t: augmentation.augment_batch(tf.gather(cache, ix), compiled=True),
    }
