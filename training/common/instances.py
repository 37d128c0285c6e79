"""The SageMaker training instance types this project knows, one table that the launcher (quotas,
INSTANCE=auto, prices, the cost line), the reports and the stand-in's service quotas all read.

For each type: its GPUs, the newest TensorFlow training image it can run, and a fallback on-demand
price, SageMaker training in us-east-1, USD per hour, written down from the SageMaker pricing page
as known on PRICES_AS_OF (this workplace cannot fetch it). Other regions cost more or less; spot
prices vary by hour.
"""

from dataclasses import dataclass

from training.common.errors import UserError

PRICES_AS_OF = "2026-11-30"
PRICES_SOURCE = "price table in training/common/instances.py (us-east-1, on-demand)"
NEWEST_TF = ("2.19", "py312")  # newest TF training image in the pinned SDK for non-P2 types
P2_TF = ("2.11", "py39")  # P2 (K80): no TF image after 2.11
AUTO = "auto"  # INSTANCE=auto: the cheapest GPU type the account has quota for


@dataclass(frozen=True)
class Instance:
    name: str
    gpus: int
    accelerator: str
    price_per_hour: float
    framework: tuple[str, str]  # (TF version, Python version) of the image we use

    @property
    def family(self) -> str:
        return self.name.split(".")[1]

    @property
    def deprecated(self) -> bool:
        return self.family == "p2"


INSTANCES = {
    i.name: i
    for i in [
        Instance("ml.p2.xlarge", 1, "K80", 1.125, P2_TF),
        Instance("ml.p2.8xlarge", 8, "8x K80", 9.0, P2_TF),
        Instance("ml.p2.16xlarge", 16, "16x K80", 18.0, P2_TF),
        Instance("ml.g4dn.xlarge", 1, "T4", 0.736, NEWEST_TF),
        Instance("ml.g4dn.12xlarge", 4, "4x T4", 4.89, NEWEST_TF),
        Instance("ml.g5.xlarge", 1, "A10G", 1.408, NEWEST_TF),
        Instance("ml.g5.2xlarge", 1, "A10G", 1.515, NEWEST_TF),
        Instance("ml.g5.12xlarge", 4, "4x A10G", 7.09, NEWEST_TF),
        Instance("ml.g5.48xlarge", 8, "8x A10G", 20.36, NEWEST_TF),
        Instance("ml.g6.xlarge", 1, "L4", 1.006, NEWEST_TF),
        Instance("ml.g6.12xlarge", 4, "4x L4", 5.752, NEWEST_TF),
        Instance("ml.g6e.xlarge", 1, "L40S", 2.326, NEWEST_TF),
        Instance("ml.g6e.12xlarge", 4, "4x L40S", 13.117, NEWEST_TF),
        Instance("ml.p3.2xlarge", 1, "V100", 3.825, NEWEST_TF),
        Instance("ml.p3.8xlarge", 4, "4x V100", 14.688, NEWEST_TF),
        Instance("ml.p3.16xlarge", 8, "8x V100", 28.152, NEWEST_TF),
        Instance("ml.p4d.24xlarge", 8, "8x A100", 37.688, NEWEST_TF),
        Instance("ml.p5.48xlarge", 8, "8x H100", 113.068, NEWEST_TF),
        Instance("ml.m5.xlarge", 0, "CPU (4 vCPU)", 0.23, NEWEST_TF),
    ]
}


def names(text: str) -> list[str]:
    """The instance types of a comma-separated list, as INSTANCE= and CAPACITY_FAIL= take them."""
    return [name.strip() for name in text.split(",") if name.strip()]


def lookup(name: str) -> Instance:
    if name not in INSTANCES:
        raise UserError(
            f"unknown instance type {name!r}; known: {', '.join(INSTANCES)} or {AUTO} "
            "(add it to training/common/instances.py with its price and TF version)"
        )
    return INSTANCES[name]


def gpu_types_by_price() -> list[Instance]:
    """The current (non-deprecated) GPU types, cheapest first: the candidates of INSTANCE=auto."""
    return sorted(
        (i for i in INSTANCES.values() if i.gpus and not i.deprecated),
        key=lambda i: i.price_per_hour,
    )


def gpu_types_and_the_seeds() -> list[Instance]:
    """The current GPU types, cheapest first, then the seed's deprecated K80 (ml.p2.xlarge): what
    make check and make cost list."""
    return [*gpu_types_by_price(), INSTANCES["ml.p2.xlarge"]]


def quota_name(instance_type: str, spot: bool) -> str:
    """The Service Quotas name of the type's training quota (SageMaker's own words)."""
    return f"{instance_type} for {'spot ' if spot else ''}training job usage"
