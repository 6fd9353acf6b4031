"""LatestWins: at most one frame waits, replaced frames are counted, notices are kept in order and bounded."""

from __future__ import annotations

from server.streaming import LatestWins


def test_a_newer_frame_replaces_the_waiting_one_and_is_counted() -> None:
    waiting = LatestWins()
    for i in range(5):
        waiting.put(f"frame {i}")
    assert waiting.take(0) == ("frame 4", 4)
    waiting.put("frame 5")
    assert waiting.take(0) == ("frame 5", 0)  # skipped counts since the previous take
    assert waiting.take(0) is None and waiting.skipped_total == 4


def test_notices_keep_their_place_and_are_never_replaced_by_frames() -> None:
    waiting = LatestWins()
    waiting.put("frame 0")
    waiting.put("refused", frame=False)
    waiting.put("frame 1")  # replaces frame 0, not the notice
    assert [waiting.take(0), waiting.take(0)] == [("refused", 1), ("frame 1", 0)]


def test_notices_are_bounded_and_close_ends_after_what_waits() -> None:
    waiting = LatestWins(max_notices=3)
    for i in range(10):
        waiting.put(i, frame=False)
    waiting.put("frame")
    waiting.close()
    assert not waiting.closed  # items still wait
    taken = [waiting.take(0) for _ in range(4)]
    assert [item for item, _ in taken] == [7, 8, 9, "frame"]
    assert waiting.take(0) is None and waiting.closed
