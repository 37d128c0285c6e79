"""bench.md: the measurements as a table, each row beside the seed's way or the baseline."""

from vgg_transfer.contract import FINE_TUNED, FROZEN

from training.bench.warp import BEFORE, WARP_BATCH


def render(result: dict) -> str:
    p, f, t = result["pipeline"], result[FROZEN], result["fine_tuning"]
    m = result["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores ({m['cpu_flags'] or 'no listed SIMD flags'}), "
        f"GPUs: {', '.join(m['gpus']) or 'none'}; TensorFlow {m['tensorflow']}, Keras {m['keras']}. "
        f"Medians of {result['repeats']} repeats; raw repeats in bench.json.",
        "",
        "| measurement | ours | seed's way / baseline | ratio |",
        "|---|---|---|---|",
        f"| 1. input pipeline per training epoch, 150×150 + augmentation ({p['images']} JPEGs; "
        f"decode once, spread over {p['epochs_amortised']} epochs) | "
        f"{p['ours_images_per_second']:.0f} img/s | {p['seed_images_per_second']:.0f} img/s "
        f"(ImageDataGenerator, every epoch) | **{p['ratio']:.1f}×** |",
        f"| 1b. the same, ours on one thread (the generator uses one) | "
        f"{p['ours_one_thread_images_per_second']:.0f} img/s | {p['seed_images_per_second']:.0f} img/s "
        f"| **{p['ratio_per_thread']:.1f}×** |",
        f"| 1c. one-time decode into the cache / one cached epoch with augmentation | "
        f"{p['decode_images_per_second']:.0f} img/s / {p['epoch_images_per_second']:.0f} img/s | — | — |",
        f"| 1c'. one cached epoch as the job reads it (augmentation in the training step) | "
        f"{p['training_input_images_per_second']:.0f} img/s | — | — |",
        f"| 1d. cache memory | {p['cache_bytes_per_image']} B per image: "
        f"{p['cache_bytes_per_image'] * 4000 / 1e6:.0f} MB for small's 4,000, "
        f"{p['cache_bytes_per_image'] * 21000 / 1e9:.2f} GB for full's 21,000 | — | — |",
        f"| 2. frozen phase, {f['image_size']} px, {f['epochs']} epochs ({f['images']} images) | "
        f"{f['cached_images_per_second']:.0f} img/s (feature caching) | "
        f"{f['seed_way_images_per_second']:.0f} img/s (conv base every epoch) | **{f['ratio']:.1f}×** |",
    ]
    lines += warp_rows(p["warp"])
    lines += fine_tuning_rows(t)
    if result.get("smoke"):
        s = result["smoke"]
        lines.append(
            f"| 4. smoke experiment end to end (1 run) | {FROZEN} "
            f"{s['phase_seconds'][FROZEN]:.0f} s, {FINE_TUNED} {s['phase_seconds'][FINE_TUNED]:.0f} "
            f"s, total {s['total_seconds']:.0f} s | — | — |"
        )
    for name, b in result.get("bottleneck", {}).items():
        with_xla = "with XLA" if name.startswith("xla") else "without XLA"
        lines.append(
            f"\nBottleneck {with_xla}: the {b['slower']} (training input "
            f"{b['input_images_per_second']:.0f} img/s vs fine-tuning step with augmentation "
            f"{b['step_images_per_second']:.0f} img/s)."
        )
    return "\n".join(lines + seed_equivalent_rows(result.get("seed_equivalents")))


def warp_rows(warp: dict) -> list[str]:
    lines = []
    for name, row in warp.items():
        difference = row["max_difference_from_before"]
        compared = (
            "its own draws"
            if difference is None
            else f"differs from before by {difference:.3f} of 255 at most"
        )
        lines.append(
            f"| 1e. the warp alone, {name}, batches of {WARP_BATCH} ({compared}) | "
            f"{row['images_per_second']:.0f} img/s | {warp[BEFORE]['images_per_second']:.0f} "
            f"img/s (before) | **{row['ratio_to_before']:.2f}×** |"
        )
    return lines


def fine_tuning_rows(t: dict) -> list[str]:
    lines = []
    for name in ("augmented", "mixed_precision", "xla", "xla_augmented"):
        row = t["variants"][name]
        lines.append(
            f"| 3. fine-tuning, {t['image_size']} px, {name} ({row['policy']}) | "
            f"{row['images_per_second']:.1f} img/s | "
            f"{t['variants']['float32']['images_per_second']:.1f} img/s (float32) "
            f"| **{row['ratio_to_float32']:.2f}×** |"
        )
    return lines


def seed_equivalent_rows(rows: dict | None) -> list[str]:
    """The seed's epochs at the rates measured here, beside the K80's (GPU runs)."""
    if not rows:
        return []
    lines = [
        "",
        "| seed experiment | frozen epoch | cached frozen epoch | fine-tuned epoch "
        "| K80 frozen / fine-tuned |",
        "|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        lines.append(
            f"| {name} | {row[FROZEN]:.1f} s | {row['frozen_cached']:.1f} s | "
            f"{row[FINE_TUNED]:.1f} s | {row['k80_frozen']} s / {row['k80_fine_tuned']} s |"
        )
    return lines
