"""web/turns.py: jobs run one per loop pass, first come first served, and a turn is never lost."""
from __future__ import annotations

import asyncio
import threading
from typing import Any, Coroutine, TypeVar

import pytest

from web.turns import Turns

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """asyncio.run in a thread of its own: the browser tests' Playwright keeps a loop running in this one."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = asyncio.run(coroutine)
        except BaseException as exc:  # re-raised in the test's own thread
            outcome["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "the event loop did not finish"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def test_jobs_take_turns_in_arrival_order_with_a_loop_pass_between() -> None:
    events: list[str] = []

    async def job(turns: Turns, name: str) -> None:
        async with turns.turn():
            events.append(name)
            # Stands for a request that arrives while this job runs: it must be seen before the next job.
            asyncio.get_running_loop().call_soon(events.append, f"after {name}")

    async def main() -> None:
        turns = Turns()
        await asyncio.gather(*(job(turns, name) for name in "abc"))

    run(main())
    assert events == ["a", "after a", "b", "after b", "c", "after c"]


def test_a_late_request_queues_behind_earlier_ones() -> None:
    order: list[str] = []

    async def main() -> None:
        turns = Turns()

        async def job(name: str) -> None:
            async with turns.turn():
                order.append(name)
                if name == "first":  # arrives while the first job runs, behind the two already waiting
                    asyncio.get_running_loop().call_soon(lambda: tasks.append(asyncio.ensure_future(job("late"))))

        tasks = [asyncio.ensure_future(job(n)) for n in ("first", "second", "third")]
        while not all(t.done() for t in tasks):
            await asyncio.sleep(0)

    run(main())
    assert order == ["first", "second", "third", "late"]


def test_a_failing_job_hands_the_turn_on() -> None:
    done: list[str] = []

    async def job(turns: Turns, name: str) -> None:
        async with turns.turn():
            if name == "bad":
                raise ValueError(name)
            done.append(name)

    async def main() -> list[object]:
        turns = Turns()
        return await asyncio.gather(job(turns, "bad"), job(turns, "good"), return_exceptions=True)

    results = run(main())
    assert isinstance(results[0], ValueError) and done == ["good"]


@pytest.mark.parametrize("when", ["while waiting", "after being handed the turn"])
def test_a_cancelled_waiter_does_not_keep_the_turn(when: str) -> None:
    done: list[str] = []

    async def main() -> None:
        turns = Turns()
        release = asyncio.Event()

        async def holder() -> None:
            async with turns.turn():
                done.append("holder")
            await release.wait()

        async def waiter(name: str) -> None:
            async with turns.turn():
                done.append(name)

        # Started in one loop pass: the holder takes the turn, the other two queue behind it.
        first = asyncio.ensure_future(holder())
        cancelled = asyncio.ensure_future(waiter("cancelled"))
        last = asyncio.ensure_future(waiter("last"))
        await asyncio.sleep(0)
        if when == "after being handed the turn":
            await asyncio.sleep(0)  # the turn is handed to the first waiter, which has not run yet
        cancelled.cancel()
        await asyncio.wait_for(last, timeout=2)
        release.set()
        await first

    run(main())
    assert done == ["holder", "last"]


def test_each_event_loop_takes_its_own_turns() -> None:
    """Test clients run an event loop each, in threads of their own: one loop's turn never waits for another's."""
    turns = Turns()
    inside, release = threading.Event(), threading.Event()
    finished: list[str] = []

    async def hold() -> None:
        async with turns.turn():
            inside.set()
            release.wait(5)  # a job running on this loop's thread while the other loop asks for a turn
        finished.append("holder")

    async def ask() -> None:
        async with turns.turn():
            finished.append("other loop")

    holder = threading.Thread(target=asyncio.run, args=(hold(),))
    holder.start()
    assert inside.wait(5)
    run(asyncio.wait_for(ask(), timeout=2))
    release.set()
    holder.join(5)
    assert finished == ["other loop", "holder"]
