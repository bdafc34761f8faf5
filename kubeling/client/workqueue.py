"""client-go's rate-limited work queue, for one asyncio event loop.

Guarantees, as in k8s.io/client-go/util/workqueue:
- a key is queued at most once however often it is added (dirty set);
- a key is never handed to two workers at once: added while being
  processed, it is held back and re-queued when the worker calls done()
  (processing set), so it is processed again but never lost;
- add_after() delays an add (a key already waiting keeps the earlier time);
- add_rate_limited() delays by the rate limiter: by default client-go's
  DefaultControllerRateLimiter, the larger of a per-key exponential backoff
  (5 ms doubling to 1000 s, reset by forget()) and an overall token bucket
  (10 retries/s, bursts of 100) that keeps mass failures from hammering the
  server.

Deviation from client-go: after shut_down(), get() returns None at once even
if keys are still queued (client-go drains them); controllers shut down to
stop, not to finish the backlog. Adds after shut_down() are ignored, as in
client-go.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

from ..api.errors import APIError
from .flowcontrol import TokenBucket

log = logging.getLogger(__name__)


class RateLimiter(Protocol):
    def when(self, key: str) -> float:
        """Seconds to wait before retrying `key` (counts a retry)."""

    def forget(self, key: str) -> None: ...

    def num_requeues(self, key: str) -> int: ...


class ItemExponentialRateLimiter:
    """base * 2^retries per key, capped at max_delay."""

    def __init__(self, base: float = 0.005, max_delay: float = 1000.0) -> None:
        self.base = base
        self.max_delay = max_delay
        self._failures: dict[str, int] = {}

    def when(self, key: str) -> float:
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        if n > 62:  # 2^n would only overflow the cap anyway
            return self.max_delay
        return min(self.base * (1 << n), self.max_delay)

    def forget(self, key: str) -> None:
        self._failures.pop(key, None)

    def num_requeues(self, key: str) -> int:
        return self._failures.get(key, 0)


class BucketRateLimiter:
    """One token bucket shared by every key: bounds the overall retry rate."""

    def __init__(self, qps: float = 10.0, burst: int = 100, clock: Callable[[], float] = time.monotonic) -> None:
        self._bucket = TokenBucket(qps, burst, clock)

    def when(self, key: str) -> float:
        return self._bucket.reserve()

    def forget(self, key: str) -> None:
        pass  # the bucket has no per-key state

    def num_requeues(self, key: str) -> int:
        return 0


class MaxOfRateLimiter:
    """The longest delay any of the limiters asks for."""

    def __init__(self, *limiters: RateLimiter) -> None:
        self.limiters = limiters

    def when(self, key: str) -> float:
        return max(limiter.when(key) for limiter in self.limiters)

    def forget(self, key: str) -> None:
        for limiter in self.limiters:
            limiter.forget(key)

    def num_requeues(self, key: str) -> int:
        return max(limiter.num_requeues(key) for limiter in self.limiters)


def default_controller_rate_limiter() -> RateLimiter:
    """client-go's workqueue.DefaultControllerRateLimiter()."""
    return MaxOfRateLimiter(ItemExponentialRateLimiter(0.005, 1000.0), BucketRateLimiter(10.0, 100))


class WorkQueue:
    """See the module docstring. Not thread-safe: use it from its event loop only."""

    def __init__(self, name: str = "", rate_limiter: RateLimiter | None = None) -> None:
        self.name = name
        self.rate_limiter = rate_limiter if rate_limiter is not None else default_controller_rate_limiter()
        self._queue: deque[str] = deque()
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        self._waiting: dict[str, asyncio.TimerHandle] = {}
        self._getters: deque[asyncio.Future[None]] = deque()
        self._shutting_down = False

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def add(self, key: str) -> None:
        if self._shutting_down or key in self._dirty:
            return
        self._dirty.add(key)
        if key in self._processing:
            return  # done() queues it
        self._queue.append(key)
        self._wake_one()

    def add_after(self, key: str, delay: float) -> None:
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        ready = loop.time() + delay
        timer = self._waiting.get(key)
        if timer is not None:
            if timer.when() <= ready:
                return
            timer.cancel()
        self._waiting[key] = loop.call_at(ready, self._ready, key)

    def _ready(self, key: str) -> None:
        del self._waiting[key]
        self.add(key)

    def add_rate_limited(self, key: str) -> None:
        self.add_after(key, self.rate_limiter.when(key))

    def forget(self, key: str) -> None:
        self.rate_limiter.forget(key)

    def num_requeues(self, key: str) -> int:
        return self.rate_limiter.num_requeues(key)

    async def get(self) -> str | None:
        """The next key, marked as being processed until done(key); None once shut down."""
        while not self._queue:
            if self._shutting_down:
                return None
            fut = asyncio.get_running_loop().create_future()
            self._getters.append(fut)
            try:
                await fut
            except asyncio.CancelledError:
                # Woken but cancelled before running: pass the wake-up on, or a queued key
                # would wait for the next add() while another worker sleeps.
                if fut.done() and not fut.cancelled():
                    self._wake_one()
                else:
                    with contextlib.suppress(ValueError):  # _wake_one may have dropped it already
                        self._getters.remove(fut)
                raise
        if self._shutting_down:
            return None
        key = self._queue.popleft()
        self._processing.add(key)
        self._dirty.discard(key)
        return key

    def done(self, key: str) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            self._wake_one()

    def shut_down(self) -> None:
        self._shutting_down = True
        for timer in self._waiting.values():
            timer.cancel()
        self._waiting.clear()
        while self._getters:
            fut = self._getters.popleft()
            if not fut.done():
                fut.set_result(None)

    def _wake_one(self) -> None:
        while self._getters:
            fut = self._getters.popleft()
            if not fut.done():
                fut.set_result(None)
                return


async def run_workers(queue: WorkQueue, sync: Callable[[str], Awaitable[None]], workers: int, name: str) -> None:
    """Run `workers` concurrent workers until the queue shuts down or this is
    cancelled (which shuts the queue down: the workers own its lifetime, as a
    client-go controller's Run defers queue.ShutDown()).

    Each worker: get a key, await sync(key); on success forget its backoff, on
    failure log and re-queue it rate-limited; always done(key).
    """

    async def worker() -> None:
        while (key := await queue.get()) is not None:
            try:
                await sync(key)
            except Exception as e:
                queue.add_rate_limited(key)
                # API refusals (conflicts, not found) are routine for a level-triggered
                # controller: one line; anything else is a bug worth its traceback.
                expected = isinstance(e, (APIError, ConnectionError))
                log.log(logging.INFO if isinstance(e, APIError) and e.code == 409 else logging.WARNING,
                        "%s: error syncing %r (retry %d): %s", name, key, queue.num_requeues(key), e,
                        exc_info=not expected)
            else:
                queue.forget(key)
            finally:
                queue.done(key)

    tasks = [asyncio.create_task(worker(), name=f"{name}-worker-{i}") for i in range(workers)]
    try:
        await asyncio.gather(*tasks)
    finally:
        queue.shut_down()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
