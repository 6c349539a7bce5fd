"""The lag timer's read of positions survives a rebalance that revokes a partition meanwhile
(stream/worker/app.py); the real race is in tests/stream/tools/test_rebalance.py."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from aiokafka.errors import IllegalStateError
from faust.types import TP

from fraudstream.stream.worker.app import partition_positions


class RevokingConsumer:
    """Owns partitions 0-2 of `tx`; partition 1 is revoked once its position is asked."""

    def __init__(self) -> None:
        self.owned = {TP("tx", 0), TP("tx", 1), TP("tx", 2), TP("labels", 0)}

    def assignment(self) -> set[TP]:
        return self.owned

    async def position(self, tp: TP) -> int:
        if tp == TP("tx", 1):
            self.owned.discard(tp)  # the assignment changes under the caller's loop
            raise IllegalStateError(f"Partition {tp} is not assigned")
        return 10 * tp.partition

    def highwater(self, tp: TP) -> int:
        return 100


def test_a_partition_revoked_while_asked_is_left_out_instead_of_crashing_the_worker() -> None:
    app = SimpleNamespace(consumer=RevokingConsumer())
    positions = asyncio.run(partition_positions(app, "tx"))  # type: ignore[arg-type]
    assert sorted((tp.partition, position, end) for tp, position, end in positions) == [
        (0, 0, 100), (2, 20, 100)]  # fmt: skip
