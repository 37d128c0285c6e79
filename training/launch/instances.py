"""Instance types the launcher knows: GPUs, the newest TensorFlow training image each can run,
and on-demand prices.

Prices: SageMaker training, us-east-1, on-demand USD per hour, from the AWS SageMaker pricing
page as known on PRICES_AS_OF (this workplace cannot fetch it; check before relying on them).
Other regions cost more or less; spot prices vary by hour.
"""

from dataclasses import dataclass

from training.errors import UserError

PRICES_AS_OF = "2026-11-30"
PRICES_SOURCE = "aws.amazon.com/sagemaker/pricing (training, us-east-1, on-demand)"
SPOT_DISCOUNT = 0.70  # typical managed-spot saving; AWS quotes "up to 90%"
NEWEST_TF = ("2.19", "py312")  # newest TF training image in the pinned SDK for non-P2 types
P2_TF = ("2.11", "py39")  # P2 (K80): no TF image after 2.11


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


INSTANCES = {
    i.name: i
    for i in [
        Instance("ml.p2.xlarge", 1, "K80", 1.125, P2_TF),
        Instance("ml.p2.8xlarge", 8, "8x K80", 9.0, P2_TF),
        Instance("ml.p3.2xlarge", 1, "V100", 3.825, NEWEST_TF),
        Instance("ml.g4dn.xlarge", 1, "T4", 0.736, NEWEST_TF),
        Instance("ml.g5.xlarge", 1, "A10G", 1.408, NEWEST_TF),
        Instance("ml.m5.xlarge", 0, "CPU (4 vCPU)", 0.23, NEWEST_TF),
    ]
}


def lookup(name: str) -> Instance:
    if name not in INSTANCES:
        raise UserError(
            f"unknown instance type {name!r}; known: {', '.join(INSTANCES)} "
            "(add it to training/launch/instances.py with its price and TF version)"
        )
    return INSTANCES[name]


def check_framework(instance: Instance, tf_version: str) -> None:
    """SageMaker has no TF ≥ 2.12 image for P2; refuse before any AWS call."""
    major, minor = (int(part) for part in tf_version.split(".")[:2])
    if instance.family == "p2" and (major, minor) >= (2, 12):
        raise UserError(
            f"{instance.name} (K80) runs TensorFlow images up to 2.11 only, not {tf_version}; "
            "use TF 2.11 or pick another INSTANCE (e.g. ml.g4dn.xlarge)"
        )
