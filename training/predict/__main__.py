"""``make predict``: python -m training.predict --run runs/<job> --images <folder|image|zip|kaggle>
[--out FILE] [--clip 0.005] (see training/predict/__init__.py)."""

import argparse
import json
import sys
from pathlib import Path

from vgg_transfer.contract import MODEL_FILE

from training.common.errors import UserError, cli
from training.data import kaggle_download
from training.data.sample import EXPERIMENT as SAMPLE_EXPERIMENT
from training.predict.images import KAGGLE, sources
from training.predict.submission import UNDECODED, predict


@cli
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="make predict: a run's model over images, into a Kaggle submission"
    )
    parser.add_argument("--run", type=Path, help="a run folder: runs/<job>")
    parser.add_argument(
        "--images", type=Path, help=f"folder, image, zip, or {KAGGLE} (Kaggle's test.zip)"
    )
    parser.add_argument("--out", type=Path, help="default: <run>/predictions.csv (never replaced)")
    parser.add_argument(
        "--clip", type=clip_value, default=0.0, help="keep P(dog) in [clip, 1-clip], e.g. 0.005"
    )
    args = parser.parse_args(argv)
    model = model_file(args.run)  # every check before TensorFlow is imported (seconds)
    images = images_to_read(args.images)
    out = output_file(args.run, args.out)
    note = sample_note(args.run)
    if note:
        print(note)
    summary = predict(model, images, out, clip=args.clip)
    for name in summary.undecoded:
        print(f"does not decode, row set to {UNDECODED}: {name}", file=sys.stderr)
    print(summary.line(out))
    return 0


def model_file(run: Path | None) -> Path:
    if not run:
        raise UserError(
            "which run? make predict RUN=runs/<job> IMAGES=<folder, image or zip> (runs are the "
            "folders under runs/ with a report.md: `make report` lists them)"
        )
    path = run / "model" / MODEL_FILE
    if not path.is_file():
        raise UserError(
            f"no model at {path}: pass RUN=runs/<job> of a finished run (make train-local, or "
            "make results JOB=<name> for a cloud run; `make report` lists the runs)"
        )
    return path


def images_to_read(images: Path | None) -> Path:
    if not images:
        raise UserError(
            "which images? make predict RUN=... IMAGES=<folder, image, zip, or kaggle for the "
            "competition's test.zip>"
        )
    if str(images) == KAGGLE:  # the competition's test.zip, downloaded once
        images = kaggle_download.fetch("test.zip")
    if not images.exists():
        raise UserError(f"IMAGES={images} does not exist")
    count, _ = sources(images)
    if count == 0:
        raise UserError(f"no .jpg/.jpeg/.png images in {images}")
    return images


def output_file(run: Path, out: Path | None) -> Path:
    """OUT= as given (an earlier file there is replaced, and the summary says so), else
    <run>/predictions.csv, or the first predictions-<n>.csv that is free: an earlier submission is
    never replaced unasked."""
    if out:
        if out.exists():
            print(f"OUT={out} exists: it will be replaced")
        return out
    default = run / "predictions.csv"
    if not default.exists():
        return default
    number = 2
    while (run / f"predictions-{number}.csv").exists():
        number += 1
    chosen = run / f"predictions-{number}.csv"
    print(f"{default} is an earlier submission, kept: writing {chosen.name} (OUT= names another)")
    return chosen


def sample_note(run: Path) -> str | None:
    """One line when the model learned the built-in synthetic sample, not photos."""
    report = run / "report.json"
    if report.exists() and json.loads(report.read_text()).get("experiment") == SAMPLE_EXPERIMENT:
        return (
            f"note: {run.name} trained on the built-in synthetic sample (experiment "
            f"{SAMPLE_EXPERIMENT}): warm scenes are its cats, cool ones its dogs; what it says of "
            "photos means nothing (train on Kaggle's photos: make data, then small or full)"
        )
    return None


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
