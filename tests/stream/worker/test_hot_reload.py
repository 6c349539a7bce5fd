"""Promote, break and roll back model versions under a running worker: no restart."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fraudstream.models.registry import rollback, set_live
from fraudstream.stream.tools.services import EmbeddedBroker, EmbeddedRedis
from fraudstream.stream.tools.workers import start_workers, stop_workers
from tests.support.signing import copy_version
from tests.support.worker_runs import (
    collect,
    live_version,
    produce,
    setup_run,
    stream_of,
    wait_until,
)

pytestmark = pytest.mark.integration

MODEL_INFO = "fraudstream_model_version_info"


def test_worker_hot_reloads_keeps_serving_on_a_broken_version_and_rolls_back(
    broker: EmbeddedBroker, redis_server: EmbeddedRedis, trained_registry: Path, tmp_path: Path
) -> None:
    registry = tmp_path / "registry"
    shutil.copytree(trained_registry, registry)
    copy_version(registry, "v0001", "v0002")  # same files, signed: a valid version
    copy_version(registry, "v0001", "v0003")
    with (registry / "v0003" / "xgboost.ubj").open("ab") as model_file:
        model_file.write(b"tampered")
    env, topics = setup_run(broker, redis_server, registry, tmp_path)
    txns = stream_of(1200, seed=25)
    served: list[set[str]] = []

    def decide(batch: int) -> None:
        chunk = txns[300 * batch : 300 * (batch + 1)]
        produce(broker, topics["transactions"], chunk, [])
        ids = {t.txn_id for t in chunk}
        decided = [d for d in collect(broker, topics["decisions"], 300 * (batch + 1))
                   if d["txn_id"] in ids]  # fmt: skip
        assert {d["txn_id"] for d in decided} == ids
        served.append({d["model_version"] for d in decided})

    workers = start_workers(1, env, tmp_path, session_timeout_s=2.0)
    try:
        decide(0)
        serving = workers[0]  # it looks at the registry every 2 s
        set_live(registry, "v0002")
        wait_until(lambda: live_version(serving, MODEL_INFO) == "v0002", "v0002 served")
        decide(1)
        set_live(registry, "v0003")  # fails its hash check: v0002 keeps serving
        wait_until(lambda: "cannot load model v0003" in serving.log_tail(20_000), "v0003 refused")
        decide(2)
        assert rollback(registry) == "v0002"
        assert rollback(registry) == "v0001"
        wait_until(lambda: live_version(serving, MODEL_INFO) == "v0001", "v0001 served again")
        decide(3)
        log = workers[0].log_tail(20_000)
    finally:
        stop_workers(workers)
    assert served == [{"v0001"}, {"v0002"}, {"v0002"}, {"v0001"}]
    assert "cannot load model v0003" in log and "does not match its manifest" in log
