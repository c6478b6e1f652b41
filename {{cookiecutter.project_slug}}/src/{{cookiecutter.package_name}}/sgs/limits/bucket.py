"""A token bucket: ``rate`` tokens a second, at most ``burst`` saved up.

Refilled lazily from the clock each time it is asked, so an idle bucket costs
nothing, and a million links cost a million small objects, not a timer each.
"""

from __future__ import annotations


class TokenBucket:
    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError("a token bucket needs a positive rate and burst")
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = now

    def refill(self, now: float) -> float:
        """Tokens available at ``now``."""
        elapsed = now - self.stamp
        if elapsed > 0:
            self.stamp = now
            tokens = self.tokens + elapsed * self.rate
            self.tokens = tokens if tokens < self.burst else self.burst
        return self.tokens

    def take(self, cost: float, now: float) -> bool:
        """Spend ``cost`` tokens if there are that many."""
        if self.refill(now) >= cost:
            self.tokens -= cost
            return True
        return False

    def wait(self, cost: float) -> float:
        """Seconds until ``cost`` tokens will be there (after a refill)."""
        missing = cost - self.tokens
        return missing / self.rate if missing > 0 else 0.0
