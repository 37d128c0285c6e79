"""Attributes the stand-in replaces on moto's classes, and puts back: wiring.py (SageMaker's
side of a job), iam.py (IAM as AWS applies it) and throttle.py (AWS's request rates) each hold
one set, restored in the reverse order it was made."""


class Hooks:
    def __init__(self) -> None:
        self._saved: list[tuple] = []

    def replace(self, cls, name: str, value) -> None:
        self._saved.append((cls, name, cls.__dict__.get(name)))
        setattr(cls, name, value)

    def restore(self) -> None:
        for cls, name, original in reversed(self._saved):
            if original is None:
                delattr(cls, name)
            else:
                setattr(cls, name, original)
        self._saved.clear()
