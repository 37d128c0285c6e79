"""``make predict``: python -m training.predict --run runs/<job> --images <folder|image|zip|kaggle>
[--out FILE] [--clip 0.005] (see training/predict/__init__.py)."""

import argparse
import sys
from pathlib import Path

from training.common.errors import UserError, cli
from training.data import kaggle_download
from training.predict.images import KAGGLE
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
