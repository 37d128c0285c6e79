"""SageMaker training quotas: what the account may run, and INSTANCE=auto.

``ListServiceQuotas`` returns only the quotas an account has had changed; every other quota is at
AWS's default, which ``ListAWSDefaultServiceQuotas`` gives. The defaults also tell which instance
types the region offers for training at all: a type without a quota there is not offered.
"""

from dataclasses import dataclass, field

import boto3

from training.aws_errors import AWS_OR_NETWORK_ERRORS, not_from_aws, one_line
from training.errors import UserError
from training.launch.instances import AUTO, Instance, gpu_types_by_price, lookup

SERVICE = "sagemaker"


def quota_name(instance_type: str, spot: bool) -> str:
    return f"{instance_type} for {'spot ' if spot else ''}training job usage"


@dataclass
class QuotaReading:
    applied: dict[str, float] = field(default_factory=dict)
    defaults: dict[str, float] = field(default_factory=dict)
    problem: str | None = None  # why (part of) the reading failed, in one line

    def value(self, instance_type: str, spot: bool) -> float | None:
        name = quota_name(instance_type, spot)
        return self.applied.get(name, self.defaults.get(name))

    def source(self, instance_type: str, spot: bool) -> str:
        return "applied" if quota_name(instance_type, spot) in self.applied else "AWS default"

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


def choose_auto(reading: QuotaReading, spot: bool, count: int) -> tuple[Instance, str]:
    """INSTANCE=auto: the cheapest current GPU type with quota for ``count`` instances."""
    kind = "spot training" if spot else "training"
    choice = cheapest_with_quota(reading, spot, count)
    if choice is None:
        why = reading.problem or f"no GPU type in the table has a {kind} quota of {count} or more"
        raise UserError(
            f"INSTANCE={AUTO} found no GPU type to use ({why}); request a quota increase in the "
            f"Service Quotas console (Amazon SageMaker → 'ml.g4dn.xlarge for {kind} job usage') "
            "or name an INSTANCE"
        )
    value = reading.value(choice.name, spot)
    cheaper = [i.name for i in gpu_types_by_price() if i.price_per_hour < choice.price_per_hour]
    reason = f"cheapest GPU type with {kind} quota ({value:g}, {reading.source(choice.name, spot)})"
    if cheaper:
        reason += f"; no quota for {', '.join(cheaper)}"
    return choice, reason


def resolve_instance(name: str, reading: QuotaReading, spot: bool, count: int) -> Instance:
    if name != AUTO:
        return lookup(name)
    instance, reason = choose_auto(reading, spot, count)
    print(f"  instance: {instance.name} ({instance.accelerator}) — {reason}")
    return instance
