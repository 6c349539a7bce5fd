"""The worker's producer partitions decisions as aiokafka's default partitioner does, and
skips the hash only where it cannot matter (stream/worker/faust_app.py)."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from fraudstream.stream.worker.faust_app import key_partition


@given(key=st.binary(max_size=64), partitions=st.integers(min_value=2, max_value=64))
def test_a_key_goes_where_the_kafka_default_partitioner_sends_it(
    key: bytes, partitions: int
) -> None:
    everything = list(range(partitions))
    assert key_partition(key, everything, everything) == DefaultPartitioner()(
        key, everything, everything
    )


@given(key=st.one_of(st.none(), st.binary(max_size=64)), partition=st.integers(0, 1000))
def test_a_topic_of_one_partition_gets_every_record_there(
    key: bytes | None, partition: int
) -> None:
    assert key_partition(key, [partition], [partition]) == partition
