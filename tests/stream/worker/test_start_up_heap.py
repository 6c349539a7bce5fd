"""The worker freezes its start-up heap: full collections then skip it (issue 9)."""

from __future__ import annotations

import gc
import weakref

from fraudstream.stream.worker.faust_app import freeze_start_up_heap


class Node:
    """A container the cycle collector tracks; `partner` makes reference cycles."""

    partner: Node | None = None


def test_live_objects_leave_the_collectors_generations_and_garbage_is_not_frozen() -> None:
    kept = Node()
    kept.partner = kept  # alive, in a cycle: the kind of object a full collection walks
    garbage = Node()
    garbage.partner = garbage
    garbage_ref = weakref.ref(garbage)
    del garbage  # unreachable now, but only the cycle collector can free it

    try:
        freeze_start_up_heap()
        assert garbage_ref() is None, "garbage made before start-up ended must be collected"
        assert gc.get_freeze_count() > 0
        assert not any(obj is kept for obj in gc.get_objects())
        assert kept.partner is kept
    finally:
        gc.unfreeze()
    assert any(obj is kept for obj in gc.get_objects())
