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


def service_error(code: str, message: str):
    from moto.core.exceptions import JsonRESTError

    return JsonRESTError(code, message)


class Answers:
    """What Service Quotas answers for SageMaker from the account's quotas, call by call: each
    takes moto's response (the account and region asked) and the request's parameters."""

    def __init__(self, quotas: Quotas) -> None:
        self.quotas = quotas

    def listing(self, response, values: dict) -> str:
        entries = [self.quotas.entry(name, value, response.region, response.current_account)
                   for name, value in sorted(values.items())]  # fmt: skip
        return json.dumps({"Quotas": entries})

    def list_aws_default_service_quotas(self, response, request: dict) -> str:
        return self.listing(response, self.quotas.defaults())

    def list_service_quotas(self, response, request: dict) -> str:
        return self.listing(response, dict(self.quotas.applied))

    def get_service_quota(self, response, request: dict) -> str:
        return self.one(response, request, self.quotas.value)

    def get_aws_default_service_quota(self, response, request: dict) -> str:
        return self.one(response, request, self.quotas.defaults().get)

    def one(self, response, request: dict, value_of) -> str:
        name = self.named(request)
        entry = self.quotas.entry(name, value_of(name), response.region, response.current_account)
        return json.dumps({"Quota": entry})

    def named(self, request: dict) -> str:
        name = self.quotas.named(request.get("QuotaCode", ""))
        if name is None:
            raise service_error("NoSuchResourceException", f"No quota {request.get('QuotaCode')}")
        return name

    def request_service_quota_increase(self, response, request: dict) -> str:
        quotas = self.quotas
        with quotas.lock:
            name = self.named(request)
            desired, current = float(request["DesiredValue"]), quotas.value(name) or 0.0
            if desired <= current:
                raise service_error("IllegalArgumentException", f"The requested value {desired:g} is "
                             f"not above the current value {current:g} of '{name}'.")  # fmt: skip
            quotas.applied[name] = desired
        entry = quotas.entry(name, desired, response.region, response.current_account)
        answer = {**entry, "DesiredValue": desired, "Status": "APPROVED", "Id": quota_code(name)}
        return json.dumps({"RequestedQuota": answer})


CALLS = (
    "list_aws_default_service_quotas",
    "list_service_quotas",
    "get_service_quota",
    "get_aws_default_service_quota",
    "request_service_quota_increase",
)


def install(quotas: Quotas) -> Hooks:
    """The account's quotas answer Service Quotas' SageMaker calls; other services' go to moto
    as before. Returns the hooks to restore."""
    from moto.servicequotas.responses import ServiceQuotasResponse

    answers = Answers(quotas)
    hooks = Hooks()
    for name in CALLS:
        own = ServiceQuotasResponse.__dict__.get(name)

        def handler(response, _name=name, _own=own):
            request = json.loads(response.body or "{}")
            if request.get("ServiceCode") == SERVICE:
                return getattr(answers, _name)(response, request)
            if _own is None:
                raise service_error("NoSuchResourceException",
                             "The request failed because the specified service does not exist.")  # fmt: skip
            return _own(response)

        hooks.replace(ServiceQuotasResponse, name, handler)
    return hooks
