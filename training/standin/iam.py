"""IAM in the rehearsal: every request is signed by a real identity and checked against its policies.

moto evaluates a caller's policies once its IAM enforcement is on, but it knows the resource of a
request only for S3 (bucket and key), IAM roles and ``sts:AssumeRole``; every other request is
checked against ``*``, so a statement scoped to an ARN (``training-job/*``, a log group) would deny
it, and a real finding could not be told from moto's blind spot. ``enforced()`` closes that gap for
the calls of our cloud path:

- S3 requests are checked against the IAM action AWS authorises them with (``S3_ACTIONS``);
- each SageMaker, CloudWatch Logs and Service Quotas request is checked against the ARN AWS uses for
  it (the Service Authorization Reference's resource types, ``RESOURCES`` below);
- ``CreateTrainingJob`` and ``CreateHyperParameterTuningJob`` also need what AWS checks beside the
  action: ``iam:PassRole`` on the execution role (passed to ``sagemaker.amazonaws.com``) and, because
  the request carries tags, ``sagemaker:AddTags`` on the new job.

The SageMaker side (``role_credentials``) does what the service does before a job starts: it
assumes the execution role under the role's trust policy, and the stand-in then reads channels,
writes checkpoints, artifacts and logs with those credentials only. An AccessDenied in a rehearsal is
therefore a finding about our policies, the way it would be on AWS.
"""

import contextlib
import fnmatch
import json

from training.common.sagemaker import KINDS, TRAINING_JOB, TUNING_JOB, JobKind
from training.standin.hooks import Hooks

SAGEMAKER_SERVICE = "sagemaker.amazonaws.com"


def _arn(response, service: str, resource: str) -> str:
    return f"arn:{response.partition}:{service}:{response.region}:{response.current_account}:{resource}"


def _job(kind: JobKind):
    """The ARN of the job a request names (SageMaker's ARNs carry the name in lower case)."""

    def resource(response) -> str:
        name = response._get_param(kind.name_key)
        return kind.arn(response.partition, response.region, response.current_account, name)

    return resource


_training_job, _tuning_job = _job(TRAINING_JOB), _job(TUNING_JOB)


def _log_group(response) -> str:
    return _arn(response, "logs", f"log-group:{response._get_param('logGroupName')}")


def _log_stream(response) -> str:
    stream = response._get_param("logStreamName")
    return f"{_log_group(response)}:log-stream:{stream}"


# (service, action) → the resource AWS authorises the action on. Actions not named here have no
# resource type (List…, PutMetricData) and are checked against "*", as on AWS.
RESOURCES = {
    **{
        ("sagemaker", action.split(":")[1]): _job(kind)
        for kind in KINDS
        for action in kind.launcher_actions
        if action != "sagemaker:AddTags"
    },
    ("sagemaker", "AddTags"): lambda response: response._get_param("ResourceArn"),
    ("logs", "CreateLogGroup"): _log_group,
    ("logs", "CreateLogStream"): _log_group,
    ("logs", "DescribeLogStreams"): _log_group,
    ("logs", "PutLogEvents"): _log_stream,
    ("logs", "GetLogEvents"): _log_stream,
}


# moto names a few S3 requests after the API call where IAM authorises another action.
S3_ACTIONS = {"s3:HeadBucket": "s3:ListBucket"}  # AWS: HeadBucket needs s3:ListBucket


def _s3_action_as_iam_names_it(check_action_permitted):
    def check(request, resource: str) -> None:
        request._action = S3_ACTIONS.get(request._action, request._action)
        return check_action_permitted(request, resource)

    return check


def _determine_resource(service: str):
    def resource_of(response) -> str:
        resolve = RESOURCES.get((service, response._get_action()))
        return resolve(response) if resolve else "*"

    return resource_of


def access_denied(message: str) -> Exception:
    """A denial as AWS's JSON services send it (moto answers these services in XML)."""
    from moto.core.exceptions import JsonRESTError

    return JsonRESTError("AccessDeniedException", message)


def _json_denial(authorize):
    from moto.core.exceptions import AccessDeniedError

    def check(response, resource: str = "*") -> None:
        try:
            authorize(response, resource)
        except AccessDeniedError as error:  # "User: … is not authorized to perform: …"
            raise access_denied(f"{error.message} on resource: {resource}") from error

    return check


def _response_classes() -> dict:
    from moto.logs.responses import LogsResponse
    from moto.sagemaker.responses import SageMakerResponse
    from moto.servicequotas.responses import ServiceQuotasResponse

    return {
        "sagemaker": SageMakerResponse,
        "logs": LogsResponse,
        "service-quotas": ServiceQuotasResponse,
    }


def check_allowed(response, action: str, resource: str, context: dict | None = None) -> None:
    """What AWS checks beside the request's own action, with the caller's policies."""
    from moto.iam.access_control import IAMPolicy, PermissionResult, create_access_key

    caller = create_access_key(
        account_id=response.current_account,
        partition=response.partition,
        access_key_id=response.access_key,
        headers=response.headers,
    )
    results = [
        IAMPolicy(policy).is_action_permitted(action, resource, incoming_condition_values=context)
        for policy in caller.collect_policies()
    ]
    if PermissionResult.DENIED in results or PermissionResult.PERMITTED not in results:
        raise access_denied(
            f"User: {caller.arn} is not authorized to perform: {action} on resource: {resource}"
        )


def _with_passed_role(method, job_arn, role_arn_of):
    """A SageMaker create call that also needs iam:PassRole on its role and AddTags on its job."""

    def create(response):
        check_allowed(
            response,
            "iam:PassRole",
            role_arn_of(response),
            context={"iam:PassedToService": SAGEMAKER_SERVICE},
        )
        if response._get_param("Tags"):
            check_allowed(response, "sagemaker:AddTags", job_arn(response))
        return method(response)

    return create


@contextlib.contextmanager
def enforced():
    """Within: moto checks every request's signature and the caller's policies, with resources."""
    from moto.core.authorization import enable_iam_authentication
    from moto.iam.access_control import S3IAMRequest
    from moto.sagemaker.responses import SageMakerResponse

    hooks = Hooks()
    patch = hooks.replace
    patch(
        S3IAMRequest,
        "check_action_permitted",
        _s3_action_as_iam_names_it(S3IAMRequest.check_action_permitted),
    )
    for service, cls in _response_classes().items():
        patch(cls, "_determine_resource", _determine_resource(service))
        patch(
            cls,
            "_authenticate_and_authorize_normal_action",
            _json_denial(cls._authenticate_and_authorize_normal_action),
        )
    patch(
        SageMakerResponse,
        "create_training_job",
        _with_passed_role(
            SageMakerResponse.create_training_job,
            _training_job,
            lambda response: response._get_param("RoleArn"),
        ),
    )
    patch(
        SageMakerResponse,
        "create_hyper_parameter_tuning_job",
        _with_passed_role(
            SageMakerResponse.create_hyper_parameter_tuning_job,
            _tuning_job,
            lambda response: response._get_param("TrainingJobDefinition")["RoleArn"],
        ),
    )
    try:
        with enable_iam_authentication():
            yield
    finally:
        hooks.restore()


# --- the service's side: assuming the execution role -------------------------------------------
class CannotAssumeRole(Exception):
    pass


def _values(value) -> list:
    return value if isinstance(value, list) else [value]


CONDITION_TESTS = {
    "StringEquals": lambda actual, expected: actual == expected,
    "ArnEquals": lambda actual, expected: actual == expected,
    "StringLike": fnmatch.fnmatchcase,
    "ArnLike": fnmatch.fnmatchcase,
}


def _conditions_hold(conditions: dict, context: dict) -> bool:
    for operator, tests in conditions.items():
        if operator not in CONDITION_TESTS:
            raise CannotAssumeRole(f"the stand-in cannot evaluate the trust condition {operator}")
        for key, expected in tests.items():
            actual = context.get(key)
            if actual is None or not any(
                CONDITION_TESTS[operator](actual, value) for value in _values(expected)
            ):
                return False
    return True


def trust_allows(trust_policy: str, context: dict) -> bool:
    """Does the role's trust policy let SageMaker assume it for this job?"""
    for statement in _values(json.loads(trust_policy)["Statement"]):
        principal = statement.get("Principal", {})
        services = _values(principal.get("Service", [])) if isinstance(principal, dict) else []
        if (
            statement.get("Effect") == "Allow"
            and "sts:AssumeRole" in _values(statement.get("Action", []))
            and SAGEMAKER_SERVICE in services
            and _conditions_hold(statement.get("Condition", {}), context)
        ):
            return True
    return False


def role_credentials(role_arn: str, job_arn: str, region: str) -> dict:
    """Credentials of the execution role, as SageMaker obtains them for a job's instances."""
    from moto.iam.exceptions import NotFoundException
    from moto.iam.models import iam_backends
    from moto.sts.models import sts_backends

    account, partition = job_arn.split(":")[4], job_arn.split(":")[1]
    refusal = (
        f"Could not assume role {role_arn}. Please ensure that the role exists and allows "
        f"principal '{SAGEMAKER_SERVICE}' to assume the role."
    )
    try:
        role = iam_backends[account][partition].get_role_by_arn(role_arn)
    except NotFoundException as error:
        raise CannotAssumeRole(refusal) from error
    context = {"aws:SourceAccount": account, "aws:SourceArn": job_arn}
    if not trust_allows(role.assume_role_policy_document, context):
        raise CannotAssumeRole(refusal)
    session = sts_backends[account][partition].assume_role(
        region_name=region,
        role_session_name="SageMaker",
        role_arn=role_arn,
        policy="",
        duration=3600,
        external_id="",
    )
    return {
        "aws_access_key_id": session.access_key_id,
        "aws_secret_access_key": session.secret_access_key,
        "aws_session_token": session.session_token,
    }
