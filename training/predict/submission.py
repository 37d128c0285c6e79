"""A run's model over a stream of images, into a Kaggle Redux submission: ``id,label`` rows, label
P(dog), a row for every image (0.5 for one that does not decode), written whole or not at all."""

import csv
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from training.common.errors import UserError
from training.common.progress import progress
from training.predict.images import batches, image_id, sources

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


def load_model(path: Path):
    from vgg_transfer import model as vgg

    try:
        return vgg.load_model(str(path))
    except Exception as error:  # Keras raises several kinds for a file it cannot read
        raise UserError(f"{path} is not a model this project saved ({error})") from error


def decoder(size: int):
    """(name, bytes) → (name, pixels), or (name, why it does not decode)."""
    from vgg_transfer import channels

    def decode(item):
        name, raw = item
        try:
            return name, channels.image_from_bytes(raw, size).numpy()
        except Exception as error:  # TensorFlow raises several kinds for a bad image
            return name, str(getattr(error, "message", error)).strip().splitlines()[0][:100]

    return decode


def classify(model, decoded: list, clip: float, summary: "Summary") -> list[tuple]:
    """(id, P(dog)) rows for one batch of decoded images, counted in ``summary``."""
    import numpy as np

    rows = []
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
    return rows


def write_rows(path: str, rows: list[tuple]) -> None:
    """id,label rows, ids sorted as Kaggle lists them: numbers first, in numeric order."""
    rows.sort(key=lambda row: (isinstance(row[0], str), row[0]))
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["id", "label"])
        writer.writerows((i, f"{p:.6f}") for i, p in rows)


def predict(
    model_file: Path, images: Path, out: Path, batch_size: int = BATCH, clip: float = 0.0
) -> Summary:
    """Classifies every image in ``images`` with the model into ``out``, which appears only once
    every image has been seen, readable as the rest of the run folder is."""
    model = load_model(model_file)
    decode = decoder(int(model.input_shape[1]))
    count, stream = sources(images)
    if count == 0:
        raise UserError(f"no .jpg/.jpeg/.png images in {images}")
    summary, rows, started = Summary(clip=clip), [], time.time()
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    os.close(handle)
    try:
        with (
            ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool,
            progress(count, "predict", unit="img") as bar,
        ):
            for batch in batches(stream, batch_size):
                rows += classify(model, list(pool.map(decode, batch)), clip, summary)
                bar.update(len(batch))
        if not summary.predicted:
            raise UserError(f"none of the {count} images in {images} could be decoded")
        write_rows(partial, rows)
        os.chmod(partial, 0o666 & ~current_umask())  # mkstemp makes it private
        os.replace(partial, out)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    summary.seconds = time.time() - started
    return summary


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
