"""A token bucket, shared by the client's request throttle and the work
queue's overall retry limiter (client-go's util/flowcontrol and the
BucketRateLimiter both wrap golang.org/x/time/rate the same way)."""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    """`qps` tokens a second, at most `burst` saved up.

    `reserve()` takes a token now and returns how long the caller must wait
    before using it (rate.Limiter.Reserve().Delay()). Taking the token before
    waiting, rather than waiting for one to appear, keeps concurrent callers on
    one event loop in FIFO order without a lock: each reservation pushes the
    next one further into the future.
    """

    def __init__(self, qps: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if qps <= 0:
            raise ValueError("qps must be positive")
        self._qps = qps
        self._burst = float(max(burst, 1))  # a zero burst would never admit anyone
        self._clock = clock
        self._tokens = self._burst
        self._last = clock()

    def reserve(self) -> float:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._qps)
        self._last = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self._qps
