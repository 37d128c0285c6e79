"""What a run costs: seconds per epoch per instance type × the experiment's epochs × price.

Seconds per epoch come from a measurement: this project's bench results (runs/bench/bench.json,
``make bench --device gpu`` on that instance type) where present, else the seed study's K80
timings for ml.p2.xlarge; for anything else the runtime is unknown and only the maximum (the
experiment's max runtime) is priced.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from training.launch.experiments import Experiment
from training.launch.instances import SPOT_DISCOUNT, lookup
from training.launch.prices import Price, table_price
from training.report import seed

BENCH_FILE = Path("runs/bench/bench.json")
VALIDATION_IMAGES = 2000  # the seed's validation split, evaluated every epoch
STARTUP_SECONDS = 300  # provisioning + image pull, typical for a GPU training job; a guess


@dataclass
class CostEstimate:
    instance_type: str
    instance_count: int
    price: Price
    expected_seconds: float | None
    epoch_seconds_source: str
    max_seconds: float
    spot: bool

    def on_demand(self, seconds: float) -> float:
        return seconds / 3600 * self.price.per_hour * self.instance_count

    def expected(self) -> float | None:
        """The likely bill: expected runtime, with the assumed spot saving when spot is on."""
        if self.expected_seconds is None:
            return None
        return self.on_demand(self.expected_seconds) * ((1 - SPOT_DISCOUNT) if self.spot else 1)

    def ceiling(self) -> float:
        """The most the job can cost: its maximum runtime at the on-demand rate, since nothing
        guarantees a spot saving."""
        return self.on_demand(self.max_seconds)

    def line(self) -> str:
        parts = [f"{self.instance_count}x {self.instance_type} at ${self.price.per_hour:.3f}/h"]
        if self.expected_seconds is not None:
            minutes = self.expected_seconds / 60
            if self.spot:
                parts.append(
                    f"expected {minutes:.0f} min ≈ ${self.expected():.2f} with spot "
                    f"(assumed {SPOT_DISCOUNT:.0%} saving; "
                    f"${self.on_demand(self.expected_seconds):.2f} on-demand)"
                )
            else:
                parts.append(f"expected {minutes:.0f} min ≈ ${self.expected():.2f}")
        else:
            parts.append("expected runtime unknown for this instance type (no measurement)")
        parts.append(
            f"ceiling {self.max_seconds / 60:.4g} min ≈ ${self.ceiling():.2f} "
            "(max runtime at the on-demand rate)"
        )
        parts.append(f"epoch times: {self.epoch_seconds_source}")
        parts.append(f"price: {self.price.source}")
        return "cost: " + "; ".join(parts)


def epoch_seconds(instance_type: str, train_images: int, bench_file: Path = BENCH_FILE):
    """(frozen, fine_tuned) seconds per epoch for this many training images, and the source."""
    if bench_file.exists():
        measured = json.loads(bench_file.read_text()).get("epoch_seconds_by_instance", {})
        if instance_type in measured:
            per_image = measured[instance_type]  # seconds per image: training steps, validation
            validation = VALIDATION_IMAGES * per_image["validation"]
            return (
                per_image["frozen"] * train_images + validation,
                per_image["fine_tuned"] * train_images + validation,
                f"measured by make bench ({bench_file})",
            )
    if instance_type == "ml.p2.xlarge":
        # Scale the seed's K80 timings by image count (its epochs include validation).
        ref = seed.K80_EPOCH_SECONDS["small"]
        scale = train_images / seed.RESULTS["small"]["train_images"]
        return ref["frozen"] * scale, ref["fine_tuned"] * scale, "seed study's K80 timings"
    return None, None, "none measured"


def estimate(
    experiment: Experiment,
    train_images: int,
    instance_type: str | None = None,
    instance_count: int | None = None,
    price: Price | None = None,
) -> CostEstimate:
    instance = lookup(instance_type or experiment.instance_type)
    count = instance_count or experiment.instance_count
    hp = experiment.resolved_hyperparameters()
    frozen, fine_tuned, source = epoch_seconds(instance.name, train_images)
    expected = None
    if frozen is not None:
        expected = (
            STARTUP_SECONDS
            + hp["epochs_frozen"] * frozen / count
            + hp["epochs_fine_tuned"] * fine_tuned / count
        )
    return CostEstimate(
        instance_type=instance.name,
        instance_count=count,
        price=price or table_price(instance.name),
        expected_seconds=expected,
        epoch_seconds_source=source,
        max_seconds=experiment.max_runtime_seconds,
        spot=experiment.spot,
    )
