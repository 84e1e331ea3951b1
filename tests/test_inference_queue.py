"""The inference queue of the server (issue 16, point 11): infers on threads of their own, bounded."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

pytest.importorskip("monailabel")
from fastapi import HTTPException  # noqa: E402

from cardiac_mi.viewer.panel import InferenceQueue  # noqa: E402


def test_runs_on_its_own_threads_at_most_workers_at_a_time():
    queue = InferenceQueue(workers=2, limit=8)
    running, most, names = [0], [0], set()
    lock = threading.Lock()

    def job(i: int) -> int:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
            names.add(threading.current_thread().name)
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return i * i

    async def main():
        return await asyncio.gather(*(queue.run(job, i) for i in range(6)))

    assert asyncio.run(main()) == [i * i for i in range(6)]
    assert most[0] == 2
    assert all(name.startswith("cardiac-mi-infer") for name in names)
    assert queue.pending == 0


def test_a_full_queue_answers_503_and_errors_pass_through():
    queue = InferenceQueue(workers=1, limit=2)
    release = threading.Event()

    def wait() -> str:
        release.wait(5)
        return "done"

    def refuse() -> None:
        raise HTTPException(422, "bad params")

    async def main():
        first = asyncio.ensure_future(queue.run(wait))
        second = asyncio.ensure_future(queue.run(wait))
        await asyncio.sleep(0.05)
        with pytest.raises(HTTPException) as full:
            await queue.run(wait)
        release.set()
        assert await first == await second == "done"
        with pytest.raises(HTTPException) as refused:
            await queue.run(refuse)
        return full.value, refused.value

    full, refused = asyncio.run(main())
    assert full.status_code == 503 and full.headers == {"Retry-After": "5"}
    assert "CARDIAC_MI_INFER_QUEUE=2" in full.detail
    assert refused.status_code == 422
    assert queue.pending == 0


def test_an_infer_cancelled_before_its_turn_never_runs():
    queue = InferenceQueue(workers=1, limit=4)
    release, ran = threading.Event(), []

    async def main():
        first = asyncio.ensure_future(queue.run(release.wait, 5))
        await asyncio.sleep(0.05)
        waiting = asyncio.ensure_future(queue.run(ran.append, "ran"))
        await asyncio.sleep(0.05)
        waiting.cancel()  # the request cancelled (a server shutting down, a client gone)
        await asyncio.sleep(0.05)
        release.set()
        await first

    asyncio.run(main())
    time.sleep(0.1)
    assert ran == []
    assert queue.pending == 0


def test_bad_sizes_are_refused(monkeypatch):
    with pytest.raises(ValueError, match="workers"):
        InferenceQueue(workers=0)
    monkeypatch.setenv("CARDIAC_MI_INFER_WORKERS", "three")
    monkeypatch.setenv("CARDIAC_MI_INFER_QUEUE", "2")
    queue = InferenceQueue.from_environment()
    assert (queue.workers, queue.limit) == (1, 2)
