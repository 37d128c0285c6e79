"""Where AWS Deep Learning Containers live: the ECR registry account differs by region.

Source: the SageMaker Python SDK's image URI config for ``tensorflow`` training images
(sagemaker/core/image_uri_config/tensorflow.json); tests/infra checks this table against it.
"""

DLC_REPOSITORY = "tensorflow-training"
DEFAULT_ACCOUNT = "763104351884"  # every region not listed below
REGISTRY_ACCOUNTS = {
    "af-south-1": "626614931356",
    "ap-east-1": "871362719292",
    "ap-east-2": "975050140332",
    "ap-northeast-3": "364406365360",
    "ap-south-2": "772153158452",
    "ap-southeast-3": "907027046896",
    "ap-southeast-4": "457447274322",
    "ap-southeast-5": "550225433462",
    "ap-southeast-6": "633930458069",
    "ap-southeast-7": "590183813437",
    "ca-west-1": "204538143572",
    "cn-north-1": "727897471807",
    "cn-northwest-1": "727897471807",
    "eu-central-2": "380420809688",
    "eu-south-1": "692866216735",
    "eu-south-2": "503227376785",
    "il-central-1": "780543022126",
    "me-central-1": "914824155844",
    "me-south-1": "217643126080",
    "mx-central-1": "637423239942",
    "us-gov-east-1": "446045086412",
    "us-gov-west-1": "442386744353",
    "us-iso-east-1": "886529160074",
    "us-isob-east-1": "094389454867",
}


def registry_account(region: str) -> str:
    return REGISTRY_ACCOUNTS.get(region, DEFAULT_ACCOUNT)


def partition(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    if region.startswith("us-isob-"):
        return "aws-iso-b"
    if region.startswith("us-iso-"):
        return "aws-iso"
    return "aws"


def repository_arn(region: str) -> str:
    return f"arn:{partition(region)}:ecr:{region}:{registry_account(region)}:repository/{DLC_REPOSITORY}"
