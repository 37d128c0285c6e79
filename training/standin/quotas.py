"""SageMaker's service quotas as the stand-in's account has them. moto answers Service Quotas for
VPC only; for ``ServiceCode=sagemaker`` the stand-in answers:
- ListAWSDefaultServiceQuotas: every training quota of the instance table
  (training/common/instances.py), spot and on-demand, at the account's starting values;
- ListServiceQuotas: the quotas whose value was changed, as AWS lists applied values;
- GetServiceQuota and GetAWSDefaultServiceQuota for one of them;
- RequestServiceQuotaIncrease: granted at once (AWS takes hours to days), refused, as AWS refuses
  it, when the value asked for is not above the current one.

An account starts at ``STANDIN_VALUE`` for every type (enough for any rehearsal: two hosts,
PARALLEL=4) unless it was started with other values. The values are the stand-in's, never AWS's:
what the launcher reads from an endpoint other than AWS it says is not AWS's answer.
"""

import hashlib
import json
import threading
from dataclasses import dataclass, field

from training.common.instances import INSTANCES, quota_name
from training.standin.hooks import Hooks

SERVICE = "sagemaker"
STANDIN_VALUE = 8.0


def quota_code(name: str) -> str:
    """A stable code per quota name (AWS's are L- and 8 hex digits, one per quota)."""
    return "L-" + hashlib.sha1(name.encode()).hexdigest()[:8].upper()


@dataclass
class Quotas:
    """The account's SageMaker training quotas: ``start`` for every type, ``values`` by name on
    top (both count as AWS's defaults), and what was applied since."""

    start: float = STANDIN_VALUE
    values: dict[str, float] = field(default_factory=dict)
    applied: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def defaults(self) -> dict[str, float]:
        names = [quota_name(i, spot) for i in INSTANCES for spot in (False, True)]
        return {name: self.values.get(name, self.start) for name in names} | self.values

    def value(self, name: str) -> float | None:
        return self.applied.get(name, self.defaults().get(name))

    def entry(self, name: str, value: float, region: str, account: str) -> dict:
        code = quota_code(name)
        return {
            "ServiceCode": SERVICE,
            "ServiceName": "Amazon SageMaker",
            "QuotaArn": f"arn:aws:servicequotas:{region}:{account}:{SERVICE}/{code}",
            "QuotaCode": code,
            "QuotaName": name,
            "Value": value,
            "Unit": "None",
            "Adjustable": True,
            "GlobalQuota": False,
        }

    def named(self, code: str) -> str | None:
        return next((name for name in self.defaults() if quota_code(name) == code), None)


def _error(code: str, message: str):
    from moto.core.exceptions import JsonRESTError

    return JsonRESTError(code, message)


def install(quotas: Quotas) -> Hooks:
    """The account's quotas answer Service Quotas' SageMaker calls; returns the hooks to restore."""
    from moto.servicequotas.responses import ServiceQuotasResponse

    own = {name: ServiceQuotasResponse.__dict__.get(name)
           for name in ("list_aws_default_service_quotas", "get_service_quota")}  # fmt: skip

    def params(response) -> dict:
        return json.loads(response.body or "{}")

    def sagemaker_or(name: str, answer):
        def handler(response):
            if params(response).get("ServiceCode") != SERVICE:
                if own.get(name) is None:
                    raise _error("NoSuchResourceException", "The request failed because the "
                                 "specified service does not exist.")  # fmt: skip
                return own[name](response)
            return answer(response, params(response))

        return handler

    def listing(response, values: dict) -> str:
        entries = [quotas.entry(name, value, response.region, response.current_account)
                   for name, value in sorted(values.items())]  # fmt: skip
        return json.dumps({"Quotas": entries})

    def one(response, request: dict, value_of) -> str:
        name = quotas.named(request.get("QuotaCode", ""))
        if name is None:
            raise _error("NoSuchResourceException", f"No quota {request.get('QuotaCode')}")
        entry = quotas.entry(name, value_of(name), response.region, response.current_account)
        return json.dumps({"Quota": entry})

    def request_increase(response, request: dict) -> str:
        with quotas.lock:
            name = quotas.named(request.get("QuotaCode", ""))
            if name is None:
                raise _error("NoSuchResourceException", f"No quota {request.get('QuotaCode')}")
            desired, current = float(request["DesiredValue"]), quotas.value(name) or 0.0
            if desired <= current:
                raise _error("IllegalArgumentException", f"The requested value {desired:g} is "
                             f"not above the current value {current:g} of '{name}'.")  # fmt: skip
            quotas.applied[name] = desired
        entry = quotas.entry(name, desired, response.region, response.current_account)
        return json.dumps(
            {
                "RequestedQuota": {
                    **entry,
                    "DesiredValue": desired,
                    "Status": "APPROVED",
                    "Id": quota_code(name),
                }
            }
        )

    hooks = Hooks()
    handlers = {
        "list_aws_default_service_quotas": lambda r, _: listing(r, quotas.defaults()),
        "list_service_quotas": lambda r, _: listing(r, dict(quotas.applied)),
        "get_service_quota": lambda r, q: one(r, q, quotas.value),
        "get_aws_default_service_quota": lambda r, q: one(r, q, quotas.defaults().get),
        "request_service_quota_increase": request_increase,
    }
    for name, answer in handlers.items():
        hooks.replace(ServiceQuotasResponse, name, sagemaker_or(name, answer))
    return hooks
