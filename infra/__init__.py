"""Infrastructure as code (Pulumi): the training bucket, the SageMaker execution role and the
launcher policy. ``infra/__main__.py`` is the Pulumi program; ``python -m infra.cli`` wraps the
pulumi CLI for ``make infra-*``."""
