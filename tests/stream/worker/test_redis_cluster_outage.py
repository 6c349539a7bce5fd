"""A real worker on a three-master Redis Cluster while one master is frozen for 10 s."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fraudstream.features.pseudonyms import IdPseudonyms
from fraudstream.features.redis_cluster import PAUSE_AFTER_FAILURE_S
from fraudstream.features.store import GENERATION_KEY, transaction_keys
from fraudstream.stream.tools.services import EmbeddedBroker
from fraudstream.stream.tools.workers import start_workers, stop_workers
from tests.support.redis_cluster import LocalRedisCluster
from tests.support.worker_runs import (
    assert_decided_exactly_once,
    assert_features_match_offline,
    collect,
    distinct,
    produce,
    scrape,
    setup_run,
    stream_of,
)

pytestmark = [pytest.mark.integration, pytest.mark.redis_cluster]

#: How long the master stays frozen: several of the store's pauses and its 0.5 s timeouts,
#: and past the cluster's node timeout (the other masters mark it failed).
OUTAGE_S = 10.0


def counter(exposition: str, name: str) -> float:
    return sum(sample.value for family in text_string_to_metric_families(exposition)
               for sample in family.samples if sample.name == name)  # fmt: skip


def test_a_frozen_master_costs_only_its_transactions_and_the_worker_recovers_by_itself(
    broker: EmbeddedBroker, redis_cluster: LocalRedisCluster, trained_registry: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    """SIGSTOP one master (no replica; not the one holding the generation token) for 10 s
    while a stream is decided, then SIGCONT: the transactions whose card, merchant or txn
    keys live on it are decided degraded and counted, the others at full quality (exact
    card windows); nothing is lost; after the return every decision is full quality again.

    The model budget is generous so only the store can make a decision degraded here.
    """
    env, topics = setup_run(broker, redis_cluster, trained_registry, tmp_path,
                            model_timeout_ms="5000")  # fmt: skip
    ids = IdPseudonyms(env["FRAUDSTREAM_ID_HASH_KEY"])  # the worker keys Redis by pseudonym
    frozen = (redis_cluster.node_of(GENERATION_KEY) + 1) % 3
    txns = stream_of(1200, seed=31)
    before, during, after = txns[:400], txns[400:800], txns[800:]
    touches = {
        txn.txn_id: any(redis_cluster.node_of(key) == frozen
                        for key in transaction_keys(ids.transaction(txn)))
        for txn in txns
    }  # fmt: skip
    workers = start_workers(1, env, tmp_path, session_timeout_s=2.0)
    try:
        produce(broker, topics["transactions"], before, [])
        collect(broker, topics["decisions"], len(before))
        with redis_cluster.frozen(frozen):
            thaw_at = time.monotonic() + OUTAGE_S
            produce(broker, topics["transactions"], during, [])
            decided = collect(broker, topics["decisions"], len(before) + len(during))
            assert distinct(decided) == len(before) + len(during), "not all decided while frozen"
            time.sleep(max(0.0, thaw_at - time.monotonic()))  # the outage, not a wait
        redis_cluster.wait_until_ok()
        # Failures end with the thaw; the worker leaves the master alone for one more pause.
        time.sleep(PAUSE_AFTER_FAILURE_S + 0.5)
        produce(broker, topics["transactions"], after, [])
        decisions = collect(broker, topics["decisions"], len(txns))
        dead = collect(broker, topics["dlq"], 0, timeout_s=2)
        exposition = scrape(workers[0])
    finally:
        stop_workers(workers)
    assert_decided_exactly_once(txns, decisions)
    assert dead == []
    degraded = {d["txn_id"] for d in decisions if d["degraded"]}
    affected = {txn.txn_id for txn in during if touches[txn.txn_id]}
    spared = {txn.txn_id for txn in during} - affected
    assert affected and spared
    assert degraded == affected  # only they, and all of them; none before or after
    assert_features_match_offline(txns, decisions, only=spared | {t.txn_id for t in after
                                                                  if not touches[t.txn_id]})
    assert counter(exposition, "fraudstream_degraded_decisions_total") == len(affected)
    assert counter(exposition, "fraudstream_feature_store_errors_total") > 0
