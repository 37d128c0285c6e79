"""AWS failures a user can hit, turned into what to do about them (one place for both the data
uploader and the launcher)."""

from botocore.exceptions import ClientError, NoCredentialsError, NoRegionError

from training.errors import UserError

AWS_ERRORS = (ClientError, NoCredentialsError, NoRegionError)
ACCESS_DENIED = ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "403")


def error_code(error: Exception) -> str:
    return error.response.get("Error", {}).get("Code", "") if isinstance(error, ClientError) else ""


def aws_error(error: Exception, doing: str) -> UserError:
    if isinstance(error, NoCredentialsError):
        return UserError(
            "no AWS credentials: run `aws configure` (or `aws sso login`), or set AWS_PROFILE"
        )
    if isinstance(error, NoRegionError):
        return UserError("no AWS region: set AWS_REGION or re-run `make infra-up`")
    if error_code(error) in ACCESS_DENIED:
        return UserError(
            f"access denied while {doing}: attach the stack's launcher policy "
            "(pulumi output launcher_policy_arn) to your user or role"
        )
    return UserError(f"AWS error while {doing}: {error}")
