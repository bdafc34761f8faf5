"""WorkQueue: client-go's rate-limited queue semantics on one event loop."""

from __future__ import annotations

import asyncio

import pytest

from kubeling.api.errors import APIError
from kubeling.client.workqueue import (
    BucketRateLimiter,
    ItemExponentialRateLimiter,
    MaxOfRateLimiter,
    WorkQueue,
    default_controller_rate_limiter,
    run_workers,
)


def no_backoff() -> ItemExponentialRateLimiter:
    return ItemExponentialRateLimiter(0.001, 0.001)


async def test_add_dedupes_and_keeps_order() -> None:
    q = WorkQueue("t")
    for key in ("a", "b", "a", "c", "b"):
        q.add(key)
    assert len(q) == 3
    assert [await q.get(), await q.get(), await q.get()] == ["a", "b", "c"]
    assert len(q) == 0


async def test_key_added_while_processing_is_requeued_on_done() -> None:
    q = WorkQueue("t")
    q.add("a")
    assert await q.get() == "a"
    q.add("a")  # dirty while processing: held back, not handed to a second worker
    q.add("a")
    assert len(q) == 0
    second = asyncio.create_task(q.get())
    await asyncio.sleep(0.01)
    assert not second.done()
    q.done("a")
    assert await asyncio.wait_for(second, 1) == "a"  # processed again, exactly once more
    q.done("a")
    assert len(q) == 0


async def test_done_without_new_add_drops_key() -> None:
    q = WorkQueue("t")
    q.add("a")
    assert await q.get() == "a"
    q.done("a")
    assert len(q) == 0
    q.add("a")  # no longer processing or dirty: queued at once
    assert len(q) == 1


async def test_get_waits_for_add() -> None:
    q = WorkQueue("t")
    getters = [asyncio.create_task(q.get()) for _ in range(3)]
    await asyncio.sleep(0.01)
    assert not any(g.done() for g in getters)
    q.add("x")
    q.add("y")
    await asyncio.sleep(0.01)
    assert sorted(str(g.result()) for g in getters if g.done()) == ["x", "y"]
    q.shut_down()
    assert [await g for g in getters if not g.done()] == [None]


async def test_cancelled_getter_passes_the_wakeup_on() -> None:
    q = WorkQueue("t")
    first = asyncio.create_task(q.get())
    second = asyncio.create_task(q.get())
    await asyncio.sleep(0.01)
    q.add("a")  # wakes `first`...
    first.cancel()  # ...which is cancelled before it runs
    assert await asyncio.wait_for(second, 1) == "a"
    assert first.cancelled()


async def test_add_after() -> None:
    q = WorkQueue("t")
    q.add_after("a", 0.05)
    q.add_after("a", 0.5)  # already waiting sooner: the earlier time stands
    q.add_after("b", 0.5)
    q.add_after("b", 0.05)  # sooner than the waiting one: moved up
    q.add_after("c", 0)  # no delay: added now
    assert len(q) == 1
    await asyncio.sleep(0.15)
    assert len(q) == 3
    assert [await q.get() for _ in range(3)] == ["c", "a", "b"]
    await asyncio.sleep(0.5)
    assert len(q) == 0  # the superseded timers did not fire


async def test_add_after_dedupes_with_queued_key() -> None:
    q = WorkQueue("t")
    q.add("a")
    q.add_after("a", 0.01)
    await asyncio.sleep(0.05)
    assert len(q) == 1


def test_item_exponential_backoff() -> None:
    rl = ItemExponentialRateLimiter(0.005, 1000.0)
    assert [rl.when("k") for _ in range(4)] == [0.005, 0.01, 0.02, 0.04]
    assert rl.num_requeues("k") == 4
    assert rl.when("other") == 0.005  # per key
    for _ in range(100):
        rl.when("k")
    assert rl.when("k") == 1000.0  # capped, and no overflow
    rl.forget("k")
    assert rl.num_requeues("k") == 0
    assert rl.when("k") == 0.005


def test_bucket_limits_overall_rate() -> None:
    now = [0.0]
    rl = BucketRateLimiter(10.0, 3, clock=lambda: now[0])
    assert [rl.when(str(i)) for i in range(3)] == [0.0, 0.0, 0.0]  # the burst
    assert rl.when("x") == pytest.approx(0.1)  # then 10/s, queued behind each other
    assert rl.when("y") == pytest.approx(0.2)
    now[0] = 10.0  # refilled, up to the burst only
    assert [rl.when(str(i)) for i in range(3)] == [0.0, 0.0, 0.0]
    assert rl.when("z") == pytest.approx(0.1)


def test_default_controller_rate_limiter() -> None:
    rl = default_controller_rate_limiter()
    assert isinstance(rl, MaxOfRateLimiter)
    assert [rl.when("k") for _ in range(3)] == [0.005, 0.01, 0.02]
    assert rl.num_requeues("k") == 3
    rl.forget("k")
    assert rl.num_requeues("k") == 0
    # past the burst of 100, the overall 10/s bucket dominates a fresh key's 5 ms
    for i in range(100):
        rl.when(f"fill-{i}")
    assert rl.when("fresh") > 0.05


async def test_add_rate_limited_and_forget() -> None:
    q = WorkQueue("t", ItemExponentialRateLimiter(0.05, 1.0))
    q.add_rate_limited("a")  # 50 ms
    assert len(q) == 0 and q.num_requeues("a") == 1
    await asyncio.sleep(0.15)
    assert len(q) == 1
    key = await q.get()
    q.add_rate_limited("a")  # 100 ms
    q.done("a")
    assert key == "a" and q.num_requeues("a") == 2
    await asyncio.sleep(0.02)
    assert len(q) == 0
    await asyncio.sleep(0.2)
    assert len(q) == 1
    q.forget("a")
    assert q.num_requeues("a") == 0


async def test_shut_down() -> None:
    q = WorkQueue("t")
    waiting = asyncio.create_task(q.get())
    await asyncio.sleep(0.01)
    q.add("a")
    q.add_after("b", 0.01)
    q.shut_down()
    assert q.shutting_down
    assert await waiting is None  # woken by the add, but shut down before it ran
    assert await q.get() is None  # nothing more is handed out, though "a" is queued...
    q.add("c")  # ...and adds are ignored
    q.add_after("d", 0.01)
    q.add_rate_limited("e")
    await asyncio.sleep(0.03)
    assert len(q) == 1  # just "a"
    assert await q.get() is None


async def test_shut_down_wakes_all_getters() -> None:
    q = WorkQueue("t")
    getters = [asyncio.create_task(q.get()) for _ in range(4)]
    await asyncio.sleep(0.01)
    q.shut_down()
    assert await asyncio.wait_for(asyncio.gather(*getters), 1) == [None] * 4


async def test_run_workers_never_processes_a_key_concurrently() -> None:
    q = WorkQueue("t", no_backoff())
    active: set[str] = set()
    overlaps: list[str] = []
    runs: dict[str, int] = {}

    async def sync(key: str) -> None:
        if key in active:
            overlaps.append(key)
        active.add(key)
        runs[key] = runs.get(key, 0) + 1
        await asyncio.sleep(0.005)
        if runs[key] < 3:
            q.add(key)  # re-added while being processed
        active.discard(key)

    workers = asyncio.create_task(run_workers(q, sync, 8, "t"))
    for key in ("a", "b", "c", "a", "b"):
        q.add(key)
    await asyncio.sleep(0.2)
    workers.cancel()
    with pytest.raises(asyncio.CancelledError):
        await workers
    assert overlaps == []
    assert runs["a"] == runs["b"] == runs["c"] == 3
    assert q.shutting_down  # the workers own the queue's lifetime


async def test_run_workers_retries_failures_with_backoff_then_forgets() -> None:
    q = WorkQueue("t", ItemExponentialRateLimiter(0.01, 1.0))
    attempts: list[tuple[str, int]] = []

    async def sync(key: str) -> None:
        attempts.append((key, q.num_requeues(key)))
        if len([a for a in attempts if a[0] == key]) < 3:
            raise (APIError(409, "Conflict", "stale") if key == "a" else RuntimeError("bug"))

    workers = asyncio.create_task(run_workers(q, sync, 2, "t"))
    q.add("a")
    q.add("b")
    for _ in range(100):
        await asyncio.sleep(0.01)
        if len(attempts) == 6:
            break
    # each retry waited for the backoff, which grew, and success reset it
    assert sorted(attempts) == [("a", 0), ("a", 1), ("a", 2), ("b", 0), ("b", 1), ("b", 2)]
    assert q.num_requeues("a") == q.num_requeues("b") == 0
    q.shut_down()
    await asyncio.wait_for(workers, 1)  # returns once the queue shuts down


async def test_run_workers_cancelled_mid_sync_marks_key_done() -> None:
    q = WorkQueue("t")
    started = asyncio.Event()

    async def sync(key: str) -> None:
        started.set()
        await asyncio.sleep(10)

    workers = asyncio.create_task(run_workers(q, sync, 1, "t"))
    q.add("a")
    await started.wait()
    workers.cancel()
    with pytest.raises(asyncio.CancelledError):
        await workers
    assert q.shutting_down
    assert len(q) == 0
