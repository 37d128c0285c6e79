"""``make rehearse``: the cloud commands, and the sequences people run them in, offline, against
the SageMaker stand-in (training/standin/) before money is spent. See scenarios.py."""
