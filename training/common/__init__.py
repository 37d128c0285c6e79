"""What every workstation command shares: one-line errors (errors, aws_errors), progress output,
the infra → launcher contract (infra_outputs), and SageMaker's job kinds and job names
(sagemaker). Nothing here imports the launcher, the data tools or the stand-in."""
