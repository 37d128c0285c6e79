"""AWS failures a user can hit, turned into what to do about them (one place for both the data
uploader and the launcher).

Three families reach us from boto3: ``ClientError`` (AWS answered with an error),
``BotoCoreError`` (no answer or a malformed one: no network, no credentials, no region, a bad
parameter, an endpoint that answers with an HTML page) and boto3's transfer errors (an upload or
download that failed every try). Each becomes one line.
"""

import os
import re

from boto3.exceptions import Boto3Error, RetriesExceededError
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as BotocoreConnectionError

from training.common.errors import UserError

# boto3's own errors come from its transfers: RetriesExceededError when a download was cut off
# every time it was tried, S3UploadFailedError and S3TransferFailedError.
AWS_ERRORS = (ClientError, BotoCoreError, Boto3Error)
AWS_OR_NETWORK_ERRORS = (ClientError, BotoCoreError, Boto3Error, ConnectionError)
ACCESS_DENIED = ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "403")
NOT_FOUND = ("404", "NoSuchKey", "NotFound", "NoSuchBucket")
_TAG = re.compile(r"<[^>]+>")
# No answer at all: refused, reset, unresolvable, timed out, a broken answer.
UNANSWERED = (BotocoreConnectionError, HTTPClientError, ConnectionError)


# Error codes AWS services answer when a caller should slow down (botocore's own list).
THROTTLING = (
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
)


def is_transient(error: Exception) -> bool:
    """Worth another try later: no network (refused, reset, timed out, a broken answer),
    throttling, or a 5xx answer."""
    if isinstance(error, UNANSWERED):
        return True
    if isinstance(error, RetriesExceededError):  # a download cut off on every try
        return True
    if isinstance(error, ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return status >= 500 or error_code(error) in THROTTLING
    return False


def is_unanswered(error: Exception) -> bool:
    """No answer at all (refused, reset, unresolvable, timed out), as opposed to AWS answering
    with throttling or a 5xx."""
    if isinstance(error, RetriesExceededError) and error.last_exception is not None:
        return is_unanswered(error.last_exception)
    return isinstance(error, UNANSWERED)


def error_code(error: Exception) -> str:
    return error.response.get("Error", {}).get("Code", "") if isinstance(error, ClientError) else ""


def denial_detail(error: Exception) -> str:
    """What AWS said beyond "Access Denied": most services name the missing action (say
    iam:PassRole, which the request's own action does not reveal)."""
    message = (
        error.response.get("Error", {}).get("Message", "") if isinstance(error, ClientError) else ""
    )
    if not message or message.strip(". ").lower() in ("access denied", "forbidden"):
        return ""
    return f" ({one_line(error, 400)})"


def one_line(error: Exception, limit: int = 160) -> str:
    """The error's gist on one line: an HTML error page (some endpoints and emulators answer
    with one) shrinks to its text, long messages are cut."""
    if isinstance(error, ClientError):
        message = error.response.get("Error", {}).get("Message") or ""
        code = error_code(error)
        text = f"{code}: {message}" if message else code or str(error)
    else:
        text = str(error)
    text = " ".join(_TAG.sub(" ", text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def endpoint_override(service: str = "") -> str | None:
    """Where requests go instead of AWS (an emulator such as the rehearsal's, a proxy), as
    botocore reads it: AWS_ENDPOINT_URL_<SERVICE>, else AWS_ENDPOINT_URL."""
    specific = f"AWS_ENDPOINT_URL_{service.upper().replace('-', '_')}" if service else ""
    return os.environ.get(specific) or os.environ.get("AWS_ENDPOINT_URL") or None


def not_from_aws(service: str, text: str) -> str:
    """``text`` about an answer, marked as not AWS's when an endpoint override is set: an
    emulator's gap must never read as a fact about the user's account."""
    endpoint = endpoint_override(service)
    return f"not AWS's answer: {endpoint} (AWS_ENDPOINT_URL) replied {text}" if endpoint else text


def aws_error(error: Exception, doing: str) -> UserError:
    if isinstance(error, RetriesExceededError) and error.last_exception is not None:
        return aws_error(error.last_exception, doing)
    if isinstance(error, NoCredentialsError):
        return UserError(
            "no AWS credentials: run `aws configure` (or `aws sso login`), or set AWS_PROFILE"
        )
    if isinstance(error, NoRegionError):
        return UserError("no AWS region: set AWS_REGION or re-run `make infra-up`")
    if isinstance(error, ReadTimeoutError):
        return UserError(f"AWS did not answer in time while {doing}: re-run in a moment")
    # Each request was retried with backoff before it came to this (training/common/aws.py).
    if isinstance(error, UNANSWERED):
        return UserError(
            f"cannot reach AWS while {doing} ({one_line(error)}): check the network, a proxy or "
            "AWS_ENDPOINT_URL, then re-run (finished steps are not repeated)"
        )
    if is_transient(error):  # throttling or a 5xx answer, every retry included
        return UserError(
            f"AWS kept answering {one_line(error)} while {doing}: re-run in a moment "
            "(finished steps are not repeated)"
        )
    if isinstance(error, ParamValidationError):
        return UserError(f"invalid request while {doing}: {one_line(error, 300)}")
    if error_code(error) in ACCESS_DENIED:
        return UserError(
            f"access denied while {doing}{denial_detail(error)}: attach the stack's launcher "
            "policy (pulumi output launcher_policy_arn) to your user or role"
        )
    if error_code(error) in ("ExpiredToken", "ExpiredTokenException", "RequestExpired"):
        return UserError(f"your AWS session expired while {doing}: log in again and re-run")
    return UserError(f"AWS error while {doing}: {one_line(error, 300)}")
