"""What a follower waits with, in tests: no real waiting, and a record of each wait."""


class Clock:
    def __init__(self) -> None:
        self.waits: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
