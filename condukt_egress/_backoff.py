"""Delays between reconnection attempts."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff between reconnection attempts.

    Attributes:
        initial: Delay before the first retry, in seconds.
        maximum: Cap on any delay, in seconds.
        factor: Growth per attempt.
        jitter: Random extra fraction (0.2 adds up to 20 %), so many clients
            do not retry in step.
    """

    initial: float = 0.5
    maximum: float = 15.0
    factor: float = 2.0
    jitter: float = 0.2

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        base = min(self.maximum, self.initial * self.factor ** min(attempt, 64))
        return min(self.maximum, base * (1.0 + self.jitter * random.random()))  # noqa: S311
