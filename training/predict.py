"""``make predict``: classify images with a run's model, into a Kaggle Redux submission file.

    python -m training.predict --run runs/<job> --images <folder | image | test.zip | kaggle>
                               [--out FILE] [--clip 0.005]

Loads ``<run>/model/model.h5`` (saved by the job under Keras 2 or Keras 3, in float32 or mixed
precision), decodes and resizes each image exactly as training did
(``vgg_transfer.channels.image_from_bytes``; preprocessing is inside the model), and writes
``id,label`` rows where label is P(dog): the format of Kaggle's *Dogs vs. Cats Redux* submissions,
ids from the file names (``1.jpg`` → 1). Redux is scored by log loss and wants a row for every
test id, so an image that does not decode still gets one, at 0.5 (what log loss charges least for
knowing nothing), and is named. ``--clip`` keeps every probability inside [clip, 1 - clip]: log
loss punishes a confident mistake without bound, and 0.005 caps one at about 5.3. Images stream
in batches, so memory stays flat for Kaggle's 12,500 test images. The CSV appears only when every
image has been seen.
"""

import argparse
import csv
import os
import re
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from training.common.errors import UserError, cli
from training.common.progress import progress
from training.data import kaggle_download

KAGGLE = "kaggle"  # IMAGES=kaggle: the competition's test.zip
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
BATCH = 64
UNDECODED = 0.5  # the row of an image that does not decode: no knowledge either way


@dataclass
class Summary:
    predicted: int = 0
    dogs: int = 0
    undecoded: list[str] = field(default_factory=list)
    seconds: float = 0.0
    probability_sum: float = 0.0
    clip: float = 0.0

    def line(self, out: Path) -> str:
        cats = self.predicted - self.dogs
        mean = self.probability_sum / self.predicted if self.predicted else float("nan")
        rate = self.predicted / self.seconds if self.seconds else 0.0
        clipped = f", clipped to [{self.clip:g}, {1 - self.clip:g}]" if self.clip else ""
        return (
            f"{self.predicted + len(self.undecoded)} rows → {out}: {self.predicted} images "
            f"classified, {self.dogs} dogs, {cats} cats (P(dog) ≥ 0.5), mean P(dog) {mean:.3f}"
            f"{clipped}; {len(self.undecoded)} did not decode ({UNDECODED} each); "
            f"{self.seconds:.0f} s ({rate:.1f} images/s)"
        )


def image_id(name: str):
    """Kaggle's id: the file name's stem, as a number when it is one (``1234.jpg`` → 1234)."""
    stem = Path(name).name.rsplit(".", 1)[0]
    return int(stem) if re.fullmatch(r"\d+", stem) else stem


def is_image(name: str) -> bool:
    base = Path(name).name
    return base.lower().endswith(IMAGE_SUFFIXES) and not base.startswith(".")


def sources(images: Path) -> tuple[int, Iterator[tuple[str, bytes]]]:
    """(count, stream of (name, bytes)) for a folder, one image, or a zip (Kaggle's test.zip)."""
    if images.is_dir():
        paths = sorted(p for p in images.rglob("*") if p.is_file() and is_image(p.name))
        return len(paths), ((str(p), p.read_bytes()) for p in paths)
    if zipfile.is_zipfile(images):
        archive = zipfile.ZipFile(images)
        members = sorted(
            (m for m in archive.infolist() if not m.is_dir() and is_image(m.filename)),
            key=lambda m: m.filename,
        )

        def read() -> Iterator[tuple[str, bytes]]:
            with archive:
                for member in members:
                    yield member.filename, archive.read(member)

        return len(members), read()
    if images.is_file() and is_image(images.name):
        return 1, iter([(str(images), images.read_bytes())])
    raise UserError(
        f"IMAGES={images}: expected a folder of images, one .jpg/.png image, or a zip of them "
        "(Kaggle's test.zip)"
    )


def batches(stream, size: int) -> Iterator[list]:
    batch = []
    for item in stream:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def load_model(run: Path):
    from vgg_transfer import model as vgg

    path = run / "model" / "model.h5"
    if not path.is_file():
        raise UserError(
            f"no model at {path}: pass RUN=runs/<job> of a finished run (make train-local, or "
            "make results JOB=<name> for a cloud run)"
        )
    try:
        return vgg.load_model(str(path))
    except Exception as error:  # Keras raises several kinds for a file it cannot read
        raise UserError(f"{path} is not a model this project saved ({error})") from error


def predict(
    run: Path, images: Path, out: Path, batch_size: int = BATCH, clip: float = 0.0
) -> Summary:
    import numpy as np
    from vgg_transfer import channels

    model = load_model(run)
    size = int(model.input_shape[1])
    count, stream = sources(images)
    if count == 0:
        raise UserError(f"no .jpg/.jpeg/.png images in {images}")
    summary = Summary(clip=clip)
    started = time.time()
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    rows = []

    def decode(item):
        name, raw = item
        try:
            return name, channels.image_from_bytes(raw, size).numpy()
        except Exception as error:  # TensorFlow raises several kinds for a bad image
            return name, str(getattr(error, "message", error)).strip().splitlines()[0][:100]

    try:
        with (
            os.fdopen(handle, "w", newline="") as file,
            ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool,
            progress(count, "predict", unit="img") as bar,
        ):
            for batch in batches(stream, batch_size):
                decoded = list(pool.map(decode, batch))
                good = [(name, pixels) for name, pixels in decoded if not isinstance(pixels, str)]
                for name, problem in decoded:
                    if isinstance(problem, str):
                        summary.undecoded.append(f"{name} ({problem})")
                        rows.append((image_id(name), UNDECODED))
                if good:
                    pixels = np.stack([p for _, p in good]).astype(np.float32)
                    probabilities = model.predict(pixels, verbose=0).reshape(-1)
                    for (name, _), p in zip(good, probabilities, strict=True):
                        p = float(min(max(p, clip), 1.0 - clip))
                        rows.append((image_id(name), p))
                        summary.predicted += 1
                        summary.dogs += p >= 0.5
                        summary.probability_sum += p
                bar.update(len(batch))
            # ids sorted as Kaggle lists them: numbers first, in numeric order
            rows.sort(key=lambda row: (isinstance(row[0], str), row[0]))
            writer = csv.writer(file)
            writer.writerow(["id", "label"])
            writer.writerows((i, f"{p:.6f}") for i, p in rows)
        if not summary.predicted:
            raise UserError(f"none of the {count} images in {images} could be decoded")
        os.replace(partial, out)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    summary.seconds = time.time() - started
    return summary


@cli
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a run folder: runs/<job>")
    parser.add_argument(
        "--images", type=Path, help=f"folder, image, zip, or {KAGGLE} (Kaggle's test.zip)"
    )
    parser.add_argument("--out", type=Path, help="default: <run>/predictions.csv")
    parser.add_argument(
        "--clip", type=clip_value, default=0.0, help="keep P(dog) in [clip, 1-clip], e.g. 0.005"
    )
    args = parser.parse_args(argv)
    if not args.run:
        raise UserError("which run? make predict RUN=runs/<job> IMAGES=<folder, image or zip>")
    if not args.images:
        raise UserError(
            "which images? make predict RUN=... IMAGES=<folder, image, zip, or kaggle for the "
            "competition's test.zip>"
        )
    if str(args.images) == KAGGLE:  # the competition's test.zip, downloaded once
        args.images = kaggle_download.fetch("test.zip")
    if not args.images.exists():
        raise UserError(f"IMAGES={args.images} does not exist")
    out = args.out or args.run / "predictions.csv"
    summary = predict(args.run, args.images, out, clip=args.clip)
    for name in summary.undecoded:
        print(f"does not decode, row set to {UNDECODED}: {name}", file=sys.stderr)
    print(summary.line(out))
    return 0


def clip_value(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value < 0.5:
        raise argparse.ArgumentTypeError(f"CLIP={text}: expected a number in [0, 0.5), e.g. 0.005")
    return value


if __name__ == "__main__":
    raise SystemExit(main())
