"""Workstation side of the project: data preparation, launcher, results and report.

``training/job/`` is the exception: it is the code shipped to SageMaker and imports nothing from
here.
"""
