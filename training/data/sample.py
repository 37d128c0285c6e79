"""The built-in sample: a small, synthetic, Kaggle-format Dogs-vs-Cats set.

    python -m training.data.sample --out data/splits

NOT real photos. It exists so that ``make train-local`` and the tests run on a fresh clone with no
download: 250 ``cat.<i>.jpg`` and 250 ``dog.<i>.jpg`` images, warm-coloured scenes for cats and
cool-coloured ones for dogs (so even a randomly initialised VGG16 can learn them), split by
``training.data.prepare`` with the seed's index ranges scaled down 50× (validation 0–19, test
20–39, train_small 40–79, train_full 40–249).
"""

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from training.common.errors import cli
from training.data.prepare import load_manifest, prepare

PER_CLASS = 250
EXPERIMENT = "smoke"  # the experiment that trains on this set (training/experiments/smoke.yaml)
SOURCE = Path("data/sample/train")
PALETTES = {  # base colour and spread per class
    "cat": ((205, 125, 60), 30),
    "dog": ((60, 115, 205), 30),
}


def draw_image(animal: str, rng: np.random.Generator) -> Image.Image:
    """A random scene: a tinted, noisy background with a few ellipses in the class colours."""
    (r, g, b), spread = PALETTES[animal]
    width, height = (int(v) for v in rng.integers(64, 129, size=2))
    base = np.array([r, g, b]) + rng.normal(0, spread, size=3)
    pixels = base[None, None, :] + rng.normal(0, 18, size=(height, width, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(1, 4))):
        x0, y0 = int(rng.integers(0, width - 16)), int(rng.integers(0, height - 16))
        x1, y1 = (
            x0 + int(rng.integers(12, width // 2 + 13)),
            y0 + int(rng.integers(12, height // 2 + 13)),
        )
        tone = np.clip(np.array([r, g, b]) * rng.uniform(0.5, 1.2), 0, 255).astype(int)
        draw.ellipse((x0, y0, x1, y1), fill=tuple(int(v) for v in tone))
    return image


def generate(source: Path = SOURCE, per_class: int = PER_CLASS, seed: int = 0) -> Path:
    """Writes the Kaggle-format files once; an existing complete set is left untouched."""
    expected = {f"{a}.{i}.jpg" for a in PALETTES for i in range(per_class)}
    if source.is_dir() and {p.name for p in source.iterdir()} == expected:
        return source
    source.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(per_class):
        for animal in PALETTES:
            draw_image(animal, rng).save(source / f"{animal}.{i}.jpg", quality=90)
    return source


def ensure_sample(splits: Path) -> None:
    """The smoke experiment's data: the synthetic sample, generated on first use."""
    if load_manifest(splits) is None:
        print(f"no data in {splits}: generating the synthetic sample set (make data-sample)")
        prepare(generate(), splits, per_class=PER_CLASS)


@cli
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/splits"))
    parser.add_argument("--source", type=Path, default=SOURCE, help="where the raw files go")
    args = parser.parse_args(argv)
    print(f"synthetic sample set (not real photos) in {args.source}")
    prepare(generate(args.source), args.out, per_class=PER_CLASS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
