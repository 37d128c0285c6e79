"""On-demand prices of SageMaker training instances: the AWS Price List API when it answers,
else the dated table in training/launch/instances.py. The cost line says which it used."""

import json
from dataclasses import dataclass

import boto3

from training.aws_errors import AWS_OR_NETWORK_ERRORS, endpoint_override, one_line
from training.launch.instances import PRICES_AS_OF, PRICES_SOURCE, lookup

PRICING_REGION = "us-east-1"  # the Price List API's endpoint; prices cover every region


@dataclass(frozen=True)
class Price:
    per_hour: float
    source: str


def table_price(instance_type: str, why: str = "") -> Price:
    note = f" — {why}" if why else ""
    return Price(
        lookup(instance_type).price_per_hour,
        f"{PRICES_SOURCE}, as of {PRICES_AS_OF}{note}",
    )


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


def on_demand_price(session: boto3.Session | None, instance_type: str, region: str) -> Price:
    if session is None:
        return table_price(instance_type)
    endpoint = endpoint_override("pricing")
    if endpoint:  # an emulator has no price list; its error would read as AWS's
        return table_price(
            instance_type, f"the Price List API was not asked: requests go to {endpoint}, not AWS"
        )
    try:
        price = price_list_price(session, instance_type, region)
    except AWS_OR_NETWORK_ERRORS as error:
        return table_price(instance_type, f"Price List API unavailable: {one_line(error, 80)}")
    if price is None:
        return table_price(instance_type, f"{instance_type} not in the Price List for {region}")
    return Price(price, f"AWS Price List API ({region}, on-demand)")
