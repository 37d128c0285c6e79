"""Names the launcher's tests and their fixtures share."""

REGION = "us-east-1"
BUCKET = "vgg-dogs-cats-test-abc123"
ROLE_NAME = "sagemaker-execution-abc123"
