"""The training bucket: private, encrypted, versioned, TLS-only, with lifecycle rules."""

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

PREFIXES = {  # one folder per purpose; the role's policy is written against these
    "data": "datasets",
    "code": "code",
    "weights": "weights",
    "outputs": "outputs",
    "checkpoints": "checkpoints",
}


@dataclass
class BucketSettings:
    name_prefix: str = "vgg-dogs-cats-"
    encryption: str = "sse-s3"  # "sse-s3" | "sse-kms"
    kms_key_arn: str | None = None  # sse-kms only; none = the AWS-managed aws/s3 key
    noncurrent_version_days: int = 30
    abort_multipart_days: int = 7
    checkpoint_expiry_days: int = 0  # 0 = keep checkpoints
    force_destroy: bool = False  # true lets `pulumi destroy` delete a non-empty bucket


class TrainingBucket(pulumi.ComponentResource):
    def __init__(self, name: str, settings: BucketSettings, opts=None) -> None:
        super().__init__("vgg-dogs-cats:storage:TrainingBucket", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.bucket = aws.s3.Bucket(
            name,
            bucket_prefix=settings.name_prefix,
            force_destroy=settings.force_destroy,
            opts=child,
        )
        self.public_access_block = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access",
            bucket=self.bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        aws.s3.BucketOwnershipControls(
            f"{name}-ownership",
            bucket=self.bucket.id,
            rule={"object_ownership": "BucketOwnerEnforced"},  # ACLs off
            opts=child,
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=self.bucket.id,
            rules=[encryption_rule(settings)],
            opts=child,
        )
        aws.s3.BucketVersioning(
            f"{name}-versioning",
            bucket=self.bucket.id,
            versioning_configuration={"status": "Enabled"},
            opts=child,
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            bucket=self.bucket.id,
            rules=lifecycle_rules(settings),
            opts=child,
        )
        aws.s3.BucketPolicy(
            f"{name}-tls-only",
            bucket=self.bucket.id,
            policy=self.bucket.arn.apply(tls_only_policy),
            # S3 rejects a bucket policy while the public access block is being applied.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.public_access_block]),
        )
        self.name = self.bucket.bucket
        self.arn = self.bucket.arn
        self.register_outputs({"name": self.name, "arn": self.arn})


def encryption_rule(settings: BucketSettings) -> dict:
    if settings.encryption == "sse-kms":
        default = {"sse_algorithm": "aws:kms"}
        if settings.kms_key_arn:
            default["kms_master_key_id"] = settings.kms_key_arn
        return {"apply_server_side_encryption_by_default": default, "bucket_key_enabled": True}
    if settings.encryption != "sse-s3":
        raise ValueError(f"encryption must be sse-s3 or sse-kms, not {settings.encryption!r}")
    return {"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}


def lifecycle_rules(settings: BucketSettings) -> list[dict]:
    rules = [
        {
            "id": "expire-noncurrent-versions",
            "status": "Enabled",
            "filter": {},
            "noncurrent_version_expiration": {"noncurrent_days": settings.noncurrent_version_days},
        },
        {
            "id": "abort-incomplete-multipart-uploads",
            "status": "Enabled",
            "filter": {},
            "abort_incomplete_multipart_upload": {
                "days_after_initiation": settings.abort_multipart_days
            },
        },
    ]
    if settings.checkpoint_expiry_days:
        rules.append(
            {
                "id": "expire-checkpoints",
                "status": "Enabled",
                "filter": {"prefix": PREFIXES["checkpoints"] + "/"},
                "expiration": {"days": settings.checkpoint_expiry_days},
            }
        )
    return rules


def tls_only_policy(bucket_arn: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "DenyInsecureTransport",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [bucket_arn, f"{bucket_arn}/*"],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }
            ],
        }
    )
