"""Capacity: what a run can use and what it costs — quotas (and INSTANCE=auto), on-demand prices
and the cost line, over the instance table (training/common/instances.py).

P2 (K80) is what the seed study used, so it stays the default of the seed experiments, but AWS has
deprecated it: the newest TensorFlow image for it is 2.11 (unpatched since early 2024), many
regions never offered it, and new accounts have a quota of 0. Preflight says so before anything
is spent.

Quotas: ``ListServiceQuotas`` returns only the quotas an account has had changed; every other
quota is at AWS's default, which ``ListAWSDefaultServiceQuotas`` gives. The defaults also tell which
instance types the region offers for training at all: a type without a quota there is not offered.

Prices: the AWS Price List API when it answers, else the dated table here; the cost line says which.

Costs: seconds per epoch (timing.py: measured by make bench on the type, else estimated from the
recipe's work and the GPU's throughput, calibrated on the seed's K80) × the experiment's epochs ×
the price; a type with no GPU known to the estimate has only its maximum (the max runtime) priced.
"""

import json
from dataclasses import dataclass, field

import boto3

from training.common.aws_errors import (
    AWS_OR_NETWORK_ERRORS,
    endpoint_override,
    not_from_aws,
    one_line,
)
from training.common.errors import UserError
from training.common.instances import (
    AUTO,
    PRICES_AS_OF,
    PRICES_SOURCE,
    Instance,
    gpu_types_and_the_seeds,
    gpu_types_by_price,
    quota_name,
)
from training.launch import timing
from training.launch.experiments import Experiment

# --- instances --------------------------------------------------------------------------------
SPOT_DISCOUNT = 0.70  # typical managed-spot saving; AWS quotes "up to 90%", nothing guarantees it


def check_framework(instance: Instance, tf_version: str) -> None:
    """SageMaker has no TF ≥ 2.12 image for P2; refuse before any AWS call."""
    major, minor = (int(part) for part in tf_version.split(".")[:2])
    if instance.deprecated and (major, minor) >= (2, 12):
        raise UserError(
            f"{instance.name} (K80) runs TensorFlow images up to 2.11 only, not {tf_version}; "
            "use TF 2.11 or pick another INSTANCE (e.g. ml.g4dn.xlarge)"
        )


def p2_warning(instance: Instance) -> str | None:
    if not instance.deprecated:
        return None
    return (
        f"{instance.name} is what the seed study used, but AWS has deprecated P2: it runs the "
        f"TensorFlow {instance.framework[0]} image, unpatched since early 2024, many regions "
        "never offered it, and new accounts have a quota of 0 (INSTANCE=auto picks a current GPU)"
    )


# --- quotas --------------------------------------------------------------------------------
SERVICE = "sagemaker"


@dataclass
class QuotaReading:
    applied: dict[str, float] = field(default_factory=dict)
    defaults: dict[str, float] = field(default_factory=dict)
    problem: str | None = None  # why (part of) the reading failed, in one line

    def value(self, instance_type: str, spot: bool) -> float | None:
        name = quota_name(instance_type, spot)
        return self.applied.get(name, self.defaults.get(name))

    def source(self, instance_type: str, spot: bool) -> str:
        """Whose value it is: applied, or AWS's default; an emulator's is said to be its own."""
        kind = "applied" if quota_name(instance_type, spot) in self.applied else "AWS default"
        return not_from_aws("service-quotas", kind)

    def offered(self, instance_type: str, spot: bool) -> bool | None:
        """Whether the region offers the type for training; None when the defaults are unknown."""
        if not self.defaults:
            return None
        return (
            quota_name(instance_type, spot) in self.defaults
            or self.value(instance_type, spot) is not None
        )


def _list(client, operation: str) -> dict[str, float]:
    values: dict[str, float] = {}
    for page in client.get_paginator(operation).paginate(ServiceCode=SERVICE):
        for quota in page.get("Quotas", []):
            values[quota["QuotaName"]] = float(quota["Value"])
    return values


def read_quotas(session: boto3.Session) -> QuotaReading:
    """Applied quotas over AWS's defaults; a failure is kept as one line, never raised."""
    reading = QuotaReading()
    client = session.client("service-quotas")
    for operation, target in (
        ("list_aws_default_service_quotas", reading.defaults),
        ("list_service_quotas", reading.applied),
    ):
        try:
            target.update(_list(client, operation))
        except AWS_OR_NETWORK_ERRORS as error:
            reading.problem = reading.problem or not_from_aws("service-quotas", one_line(error))
    return reading


def enough(reading: QuotaReading, instance: Instance, spot: bool, count: int) -> bool:
    value = reading.value(instance.name, spot)
    return value is not None and value >= count


def cheapest_with_quota(reading: QuotaReading, spot: bool, count: int) -> Instance | None:
    for instance in gpu_types_by_price():
        if enough(reading, instance, spot, count):
            return instance
    return None


def quota_kind(spot: bool) -> str:
    return "spot training" if spot else "training"


def choose_auto(reading: QuotaReading, spot_modes: tuple[bool, ...], count: int) -> list[Instance]:
    """INSTANCE=auto: every current GPU type with quota for ``count`` instances (on a capacity
    the run may use), cheapest first, and a line saying so."""
    kinds = " or ".join(quota_kind(spot) for spot in spot_modes)
    choices = [
        instance
        for instance in gpu_types_by_price()
        if any(enough(reading, instance, spot, count) for spot in spot_modes)
    ]
    if not choices:
        why = reading.problem or f"no GPU type in the table has a {kinds} quota of {count} or more"
        raise UserError(
            f"INSTANCE={AUTO} found no GPU type to use ({why}); request a quota increase in the "
            f"Service Quotas console (Amazon SageMaker → 'ml.g4dn.xlarge for {quota_kind(spot_modes[0])} "
            "job usage') or name an INSTANCE"
        )
    first = choices[0]
    cheaper = [i.name for i in gpu_types_by_price() if i.price_per_hour < first.price_per_hour]
    reason = f"the GPU types with {kinds} quota ({reading.source(first.name, spot_modes[0])}), cheapest first"
    if cheaper:
        reason += f"; no quota for {', '.join(cheaper)}"
    print(f"  instance: {', '.join(i.name for i in choices)} — {reason}")
    return choices


# --- prices --------------------------------------------------------------------------------
PRICING_REGION = "us-east-1"  # the Price List API's endpoint; prices cover every region


@dataclass(frozen=True)
class Price:
    per_hour: float
    source: str


def table_price(instance: Instance, why: str = "") -> Price:
    note = f" — {why}" if why else ""
    return Price(instance.price_per_hour, f"{PRICES_SOURCE}, as of {PRICES_AS_OF}{note}")


def _on_demand_usd(product: dict) -> float | None:
    for term in product.get("terms", {}).get("OnDemand", {}).values():
        for dimension in term.get("priceDimensions", {}).values():
            usd = dimension.get("pricePerUnit", {}).get("USD")
            if usd is not None and float(usd) > 0:
                return float(usd)
    return None


def price_list_price(session: boto3.Session, instance_type: str, region: str) -> float | None:
    """The on-demand training price in ``region`` from pricing:GetProducts; None if unlisted."""
    client = session.client("pricing", region_name=PRICING_REGION)
    filters = [
        {"Type": "TERM_MATCH", "Field": field, "Value": value}
        for field, value in (
            ("productFamily", "ML Instance"),
            ("component", "Training"),
            ("instanceName", instance_type),
            ("regionCode", region),
        )
    ]
    paginator = client.get_paginator("get_products")
    for page in paginator.paginate(ServiceCode="AmazonSageMaker", Filters=filters):
        for item in page.get("PriceList", []):
            price = _on_demand_usd(json.loads(item) if isinstance(item, str) else item)
            if price is not None:
                return price
    return None


def on_demand_price(session: boto3.Session | None, instance: Instance, region: str) -> Price:
    if session is None:
        return table_price(instance)
    endpoint = endpoint_override("pricing")
    if endpoint:  # an emulator has no price list; its error would read as AWS's
        return table_price(
            instance, f"the Price List API was not asked: requests go to {endpoint}, not AWS"
        )
    try:
        price = price_list_price(session, instance.name, region)
    except AWS_OR_NETWORK_ERRORS as error:
        return table_price(instance, f"Price List API unavailable: {one_line(error, 80)}")
    if price is None:
        return table_price(instance, f"{instance.name} not in the Price List for {region}")
    return Price(price, f"AWS Price List API ({region}, on-demand)")


# --- costs --------------------------------------------------------------------------------
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
            parts.append(f"expected runtime unknown ({self.epoch_seconds_source})")
        parts.append(
            f"ceiling {self.max_seconds / 60:.4g} min ≈ ${self.ceiling():.2f} "
            "(max runtime at the on-demand rate)"
        )
        parts.append(f"epoch times: {self.epoch_seconds_source}")
        parts.append(f"price: {self.price.source}")
        return "cost: " + "; ".join(parts)

    def tuning_line(self, jobs: int, parallel: int) -> str:
        expected = self.expected()
        return (
            f"tuning: up to {jobs} jobs, {parallel} at once: "
            + (f"expected ≈ ${expected * jobs:.2f}, " if expected is not None else "")
            + f"ceiling ≈ ${self.ceiling() * jobs:.2f} (each job's ceiling × MAX_JOBS)"
        )


def estimate(
    experiment: Experiment,
    train_images: int,
    instance: Instance,
    count: int,
    price: Price | None = None,
    validation_images: int = timing.VALIDATION_IMAGES,
) -> CostEstimate:
    hp = experiment.hp
    frozen, fine_tuned, source = timing.epoch_seconds(instance, hp, train_images, validation_images)
    expected = None
    if frozen is not None:
        expected = (
            STARTUP_SECONDS
            + hp.epochs_frozen * frozen / count
            + hp.epochs_fine_tuned * fine_tuned / count
        )
    return CostEstimate(
        instance_type=instance.name,
        instance_count=count,
        price=price or table_price(instance),
        expected_seconds=expected,
        epoch_seconds_source=source,
        max_seconds=experiment.max_runtime_seconds,
        spot=experiment.spot,
    )


def cost_table(experiment: Experiment, train_images: int, count: int,
               validation_images: int = timing.VALIDATION_IMAGES) -> str:  # fmt: skip
    """The experiment on every current GPU type, cheapest first (and the seed's K80): estimated
    time, the expected bill with spot, the on-demand one, and where each time comes from."""
    rows = ["| instance | GPU | time (est.) | expected cost | on-demand | epoch times from |",
            "|---|---|---|---|---|---|"]  # fmt: skip
    for instance in gpu_types_and_the_seeds():
        cost = estimate(experiment, train_images, instance, count, None, validation_images)
        if cost.expected_seconds is None:
            continue
        source = cost.epoch_seconds_source.split(":")[0]
        rows.append(
            f"| {count}x {instance.name} | {instance.accelerator} | "
            f"{cost.expected_seconds / 60:.0f} min | ${cost.expected():.2f}"
            f"{' with spot' if cost.spot else ''} | ${cost.on_demand(cost.expected_seconds):.2f} "
            f"| {source} |"
        )
    return "\n".join(rows)
