"""CPU accounting charges each role with its own process's (or thread's) CPU time."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from fraudstream.stream.tools.cpu_usage import (
    ROLES,
    CpuMeter,
    CpuSource,
    load_average,
    per_1000,
)


def _spin(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_a_busy_child_process_is_charged_to_its_role_and_an_idle_one_is_not() -> None:
    busy = subprocess.Popen([sys.executable, "-c", "import time\nend=time.process_time()+0.6\n"
                             "while time.process_time()<end: pass\ntime.sleep(30)"])  # fmt: skip
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.3)  # both interpreters started
        meter = CpuMeter([CpuSource("worker", busy.pid), CpuSource("broker", idle.pid)])
        meter.start()
        time.sleep(1.0)
        used = meter.seconds_by_role()
    finally:
        busy.kill(), idle.kill()
        busy.wait(), idle.wait()
    assert list(used) == list(ROLES)
    assert used["worker"] is not None and used["worker"] > 0.2
    assert used["broker"] is not None and used["broker"] < 0.05
    assert used["redis"] is None and used["producer"] is None, "nothing measured them"


def test_one_thread_is_split_from_the_rest_of_its_process() -> None:
    ready, go, spun, stop = (threading.Event() for _ in range(4))

    def measure_in_thread() -> None:
        ready.set()
        go.wait()
        _spin(0.4)
        spun.set()
        stop.wait()

    thread = threading.Thread(target=measure_in_thread)
    thread.start()
    ready.wait()
    assert thread.native_id is not None
    meter = CpuMeter([
        CpuSource("measurer", os.getpid(), only_thread=thread.native_id),
        CpuSource("producer", os.getpid(), except_thread=thread.native_id),
    ])  # fmt: skip
    meter.start()
    go.set()
    _spin(0.2)  # this (main) thread's work is the producer's
    assert spun.wait(30)
    used = meter.seconds_by_role()
    stop.set()
    thread.join()
    assert used["measurer"] is not None and used["producer"] is not None
    assert 0.35 < used["measurer"] < 0.6 and 0.15 < used["producer"] < 0.6


def test_a_process_that_is_gone_counts_as_unmeasured_and_extra_seconds_add_up() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    meter = CpuMeter([CpuSource("worker", child.pid)])
    meter.start()
    child.wait()
    figures = meter.per_1000(2000, extra_seconds={"producer": 0.5})
    assert figures["worker"] is None
    assert figures["producer"] == pytest.approx(0.25)


def test_per_1000_scales_and_refuses_to_divide_by_nothing() -> None:
    assert per_1000({"worker": 3.0, "broker": None}, 6000) == {"worker": 0.5, "broker": None}
    assert per_1000({"worker": 3.0}, 0) == {"worker": None}


def test_load_average_names_the_cores_it_is_relative_to() -> None:
    load = load_average()
    assert load["cores"] >= 1 and all(load[key] >= 0 for key in ("1m", "5m", "15m"))
