"""``python -m training.bench``: every measurement, then bench.json and bench.md (see
training/bench/__init__.py)."""

import argparse
import json
import time
from pathlib import Path

from vgg_transfer.contract import FINE_TUNED, FROZEN

from training.bench import CPU, GPU, QUICK, machine
from training.bench.phases import (
    bench_fine_tuning,
    bench_frozen,
    bench_smoke,
    bottleneck,
    seed_equivalents,
)
from training.bench.pipeline import bench_pipeline, photo_like_images
from training.bench.render import render
from training.common.errors import cli


@cli
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="make bench: our job's speed against the seed's, on this machine"
    )
    parser.add_argument("--out", type=Path, default=Path("runs/bench"))
    parser.add_argument(
        "--device",
        choices=["cpu", "gpu", "quick"],
        default="cpu",
        help="quick: tiny sizes, for testing this script",
    )
    parser.add_argument(
        "--instance-type", help="record GPU results for this SageMaker instance type"
    )
    args = parser.parse_args(argv)
    sizes = {"cpu": CPU, "gpu": GPU, "quick": QUICK}[args.device]
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    result = {"device": args.device, "repeats": sizes.repeats, "machine": machine()}
    print(f"bench on {result['machine']['cpu']} ({args.device} sizes)", flush=True)
    images = photo_like_images(args.out / f"images-{sizes.pipeline_images}", sizes.pipeline_images)
    result["pipeline"] = bench_pipeline(images, sizes)
    print(f"  1. pipeline ratio {result['pipeline']['ratio']:.1f}x", flush=True)
    result[FROZEN] = bench_frozen(sizes)
    print(f"  2. feature caching ratio {result[FROZEN]['ratio']:.1f}x", flush=True)
    result["fine_tuning"] = bench_fine_tuning(sizes)
    print("  3. fine-tuning variants measured", flush=True)
    if sizes.smoke:
        result["smoke"] = bench_smoke(args.out)
    result["bottleneck"] = bottleneck(result["pipeline"], result["fine_tuning"])
    if args.device == "gpu":
        result["seed_equivalents"] = seed_equivalents(result[FROZEN], result["fine_tuning"])
        if args.instance_type:
            infer = result[FROZEN]["inference_images_per_second"]
            result["epoch_seconds_by_instance"] = {
                args.instance_type: {
                    FROZEN: 1 / result[FROZEN]["seed_way_images_per_second"],
                    FINE_TUNED: 1
                    / result["fine_tuning"]["variants"]["augmented"]["images_per_second"],
                    "validation": 1 / infer,
                }
            }
    result["total_seconds"] = time.perf_counter() - started
    (args.out / "bench.json").write_text(json.dumps(result, indent=2))
    table = render(result)
    (args.out / "bench.md").write_text(table + "\n")
    print(table)
    print(f"\n{result['total_seconds']:.0f} s; written to {args.out / 'bench.json'} and bench.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
