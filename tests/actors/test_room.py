"""Room admission by ticket (FIFO, never blocking the caller) and the Doorbell it rings."""

from __future__ import annotations

import asyncio

from actors.pipelines.admission import Room, Ticket
from engine.doorbell import Doorbell


def tickets(n: int) -> list[Ticket]:
    return [Ticket(Doorbell()) for _ in range(n)]


async def rung(bell: Doorbell) -> bool:
    """Whether ``bell`` rang since its owner last waited (the ring is used up)."""
    waiting = asyncio.ensure_future(bell.wait())
    await asyncio.sleep(0)
    if waiting.done():
        return True
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    return False


# --- Room --------------------------------------------------------------------------


async def test_enter_admits_up_to_capacity_then_queues() -> None:
    room = Room(2)
    first, second, third = tickets(3)
    assert room.enter(first)
    assert room.enter(second)
    assert not room.enter(third)
    assert (room.used, third.queued, third.granted) == (2, True, False)
    room.release()
    room.release()
    assert room.enter(third)
    room.release()
    assert room.used == 0


async def test_release_hands_the_place_to_the_first_queued_ticket() -> None:
    room = Room(1)
    holder, first, second = tickets(3)
    assert room.enter(holder)
    assert not room.enter(first)
    assert not room.enter(second)
    room.release()
    assert (first.granted, first.queued) == (True, False)
    assert (second.granted, second.queued) == (False, True)
    assert await rung(first.bell)
    assert not await rung(second.bell)
    assert room.used == 1  # the place passed on, still counted
    assert room.enter(first)
    assert room.used == 1  # entering a granted place does not count it twice
    assert not first.granted
    room.release()
    assert second.granted
    assert room.enter(second)
    room.release()
    assert room.used == 0
    assert room.enter(holder)  # a free place again


async def test_a_ticket_keeps_one_place_in_the_queue_and_comes_back_behind_others() -> None:
    room = Room(1)
    holder, twice, other = tickets(3)
    assert room.enter(holder)
    assert not room.enter(twice)
    assert not room.enter(twice)  # asking again does not queue it a second time
    assert not room.enter(other)
    room.release()
    assert twice.granted
    assert room.enter(twice)
    assert not room.enter(twice)  # its next frame waits behind other's
    room.release()
    assert other.granted
    assert not twice.granted
    assert room.used == 1


async def test_withdrawing_a_queued_ticket_takes_it_out_of_the_queue() -> None:
    room = Room(1)
    holder, leaving, staying = tickets(3)
    assert room.enter(holder)
    assert not room.enter(leaving)
    assert not room.enter(staying)
    room.withdraw(leaving)
    assert not leaving.queued
    room.release()
    assert staying.granted
    assert not leaving.granted
    assert not await rung(leaving.bell)
    room.withdraw(staying)  # granted but never entered: the place goes back
    assert room.used == 0
    assert room.enter(leaving)


async def test_withdrawing_the_last_queued_ticket_lets_release_free_the_place() -> None:
    room = Room(1)
    holder, leaving = tickets(2)
    assert room.enter(holder)
    assert not room.enter(leaving)
    room.withdraw(leaving)
    room.release()
    assert room.used == 0
    assert not leaving.granted


async def test_withdrawing_a_granted_ticket_passes_its_place_on() -> None:
    room = Room(1)
    holder, granted, next_ = tickets(3)
    assert room.enter(holder)
    assert not room.enter(granted)
    assert not room.enter(next_)
    room.release()
    assert granted.granted
    room.withdraw(granted)
    assert not granted.granted
    assert next_.granted
    assert room.used == 1
    assert room.enter(next_)
    assert room.used == 1


async def test_resizing_up_grants_queued_tickets_in_order() -> None:
    room = Room(1)
    holder, *queued = tickets(4)
    assert room.enter(holder)
    assert not any(room.enter(ticket) for ticket in queued)
    room.resize(3)
    assert [ticket.granted for ticket in queued] == [True, True, False]
    assert [await rung(ticket.bell) for ticket in queued] == [True, True, False]
    assert room.used == 3
    assert room.enter(queued[0])
    assert room.enter(queued[1])
    assert room.used == 3
    assert queued[2].queued


async def test_shrinking_lets_places_drain_away_as_they_are_released() -> None:
    room = Room(3)
    *inside, waiting = tickets(4)
    assert all(room.enter(ticket) for ticket in inside)
    assert not room.enter(waiting)
    room.resize(1)
    room.release()
    assert (room.used, waiting.granted) == (2, False)
    room.release()
    assert (room.used, waiting.granted) == (1, False)
    room.release()  # back within capacity: the last place goes to the waiting ticket
    assert (room.used, waiting.granted) == (1, True)
    assert room.enter(waiting)
    room.release()
    assert room.used == 0


async def test_a_ticket_withdrawn_after_its_grant_passes_the_place_on() -> None:
    room = Room(1)
    first, withdrawn, kept = tickets(3)
    assert room.enter(first)
    assert not room.enter(withdrawn)
    assert not room.enter(kept)
    room.release()  # granted to the first waiter, whose owner has not come back yet
    assert withdrawn.granted
    room.withdraw(withdrawn)
    assert (kept.granted, withdrawn.granted, room.used) == (True, False, 1)
    assert await rung(kept.bell)
    assert room.enter(kept)
    assert room.used == 1


async def test_resizing_admits_queued_tickets_and_shrinks_as_places_come_back() -> None:
    room = Room(1)
    first, withdrawn, kept = tickets(3)
    assert room.enter(first)
    assert not room.enter(withdrawn)
    assert not room.enter(kept)
    room.withdraw(withdrawn)
    room.resize(2)  # a reload added a replica: the next queued ticket gets in at once
    assert (kept.granted, room.used) == (True, 2)
    assert room.enter(kept)
    room.resize(1)  # shrinking: places drain away as they are released
    room.release()
    assert room.used == 1
    room.release()
    assert room.used == 0


# --- Doorbell ----------------------------------------------------------------------


async def test_a_ring_before_wait_makes_wait_return_at_once_and_only_once() -> None:
    bell = Doorbell()
    bell.ring()
    bell.ring()  # rings while nobody waits add up to one wake-up
    assert not bell.sleeping
    assert await rung(bell)
    assert not await rung(bell)


async def test_a_ring_while_waiting_wakes_the_owner() -> None:
    bell = Doorbell()
    assert not bell.sleeping
    waiting = asyncio.ensure_future(bell.wait())
    await asyncio.sleep(0)
    assert bell.sleeping
    assert not waiting.done()
    bell.ring()
    assert not bell.sleeping  # rung, though the owner has not run yet
    await asyncio.wait_for(waiting, 1.0)
    assert not bell.sleeping


async def test_ring_works_as_a_future_done_callback() -> None:
    bell = Doorbell()
    waiting = asyncio.ensure_future(bell.wait())
    done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    done.add_done_callback(bell.ring)
    await asyncio.sleep(0)
    assert not waiting.done()
    done.set_result(1)
    await asyncio.wait_for(waiting, 1.0)


async def test_a_cancelled_wait_leaves_the_bell_usable() -> None:
    bell = Doorbell()
    assert not await rung(bell)  # waits, then is cancelled
    assert not bell.sleeping
    bell.ring()
    assert await rung(bell)
