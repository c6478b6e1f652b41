"""One timer for many deadlines of one length: never early, at most a step late, in order."""

from __future__ import annotations

import asyncio

import pytest

from {{ cookiecutter.package_name }}.sgs import Deadlines


async def test_deadlines_fire_in_order_never_early_and_at_most_a_step_late() -> None:
    loop = asyncio.get_running_loop()
    fired: list[tuple[int, float]] = []
    deadlines = Deadlines(0.2, lambda key: fired.append((key, loop.time())), step=0.05)
    added: dict[int, float] = {}
    for key in range(30):
        added[key] = loop.time()
        deadlines.add(key)
        if key % 10 == 9:
            await asyncio.sleep(0.03)
    assert len(deadlines) == 30
    await asyncio.sleep(0.2 + 0.1 + 0.05)
    for _ in range(100):  # a loaded machine may run the timer late: wait for it
        if len(fired) == 30:
            break
        await asyncio.sleep(0.05)
    assert [key for key, _ in fired] == list(range(30))
    for key, at in fired:
        assert at >= added[key] + 0.2 - 0.002, f"key {key} fired early"  # timers tick in ms
    assert len(deadlines) == 0 and deadlines.handle is None


async def test_close_forgets_pending_deadlines() -> None:
    fired: list[object] = []
    deadlines = Deadlines(0.05, fired.append)
    deadlines.add("a")
    deadlines.close()
    await asyncio.sleep(0.15)
    assert fired == [] and len(deadlines) == 0
    deadlines.add("b")  # usable again
    await asyncio.sleep(0.2)
    assert fired == ["b"]


def test_a_deadline_needs_a_positive_delay() -> None:
    with pytest.raises(ValueError, match="positive"):
        Deadlines(0, print)
