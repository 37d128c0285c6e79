"""Launching: experiments, preflight, the SageMaker launcher, local mode and costs."""
