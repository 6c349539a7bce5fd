"""The decide path's instructions per fresh transaction, counted by callgrind: exact.

Timed benches on this machine swing by ±10 % from run to run (bench/RESULTS.md), so a
change worth 1-2 % of the decide path cannot be seen in seconds. Instructions can:
callgrind counts the same total for the same code and input whatever else the machine
does. This runs `WorkerRuntime.decide` (parse, Redis features on a real redis-server,
both models, ensemble, rules, thresholds, reasons, score store) and encodes each decision,
for the load test's own transactions (`build_step_records`, 600/s x 35 s, seed 2026) in
batches of 14 (what the worker takes at 600/s), and counts only the measured part: 2,800
transactions after 1,400 to warm up. Every transaction is new to Redis; a replay of
recorded ones would be far cheaper and flatter the figure.

    python -m bench.bench_decide_instructions [--source FOLDER ...]

`--source`: a folder put first on PYTHONPATH, holding `fraudstream/{stream,models,
features,thresholds}` (`git archive REV stream models features thresholds | tar -x -C
FOLDER/fraudstream`), to count another version; several are counted one after another.
Needs valgrind (`callgrind_control` comes with it); a run takes about a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import uvloop

from bench.bench_hot_path import decide_in_batches, started_runtime
from fraudstream.stream.tools.loadtest_traffic import build_step_records
from fraudstream.stream.tools.services import EmbeddedRedis

WARM_UP = 1_400
MEASURED = 2_800
BATCH = 14


async def decide_when_told(folder: Path, redis_url: str) -> None:
    """The measured program: warm up, say so, wait for `go`, decide, say `done`, and wait
    for `go` to go (instrumentation is on from `go` to the driver's dump)."""
    runtime = await started_runtime(redis_url, Path("registry").resolve())
    values = [value for _, _, value in build_step_records([600], 35, 2026)[0]]
    await decide_in_batches(runtime, values, 0, WARM_UP, BATCH)
    (folder / "ready").touch()
    while not (folder / "go").exists():
        await asyncio.sleep(0.05)
    await decide_in_batches(runtime, values, WARM_UP, WARM_UP + MEASURED, BATCH)
    (folder / "done").touch()
    while (folder / "go").exists():  # nothing more is counted: wait for the dump
        await asyncio.sleep(0.05)


def run_child(folder: Path) -> None:
    with EmbeddedRedis() as redis:  # on uvloop, as the worker runs (`run_on_uvloop`)
        uvloop.run(decide_when_told(folder, redis.unix_url or redis.url))


def _wait_for(path: Path, child: subprocess.Popen[bytes]) -> None:
    while not path.exists():
        if child.poll() is not None:
            raise SystemExit(f"the measured program ended early (exit {child.returncode})")
        time.sleep(0.2)


def _callgrind_control(child: subprocess.Popen[bytes], *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(child.pid)], check=True, capture_output=True)


def instructions_per_transaction(source: Path | None) -> float:
    """Run the child under callgrind with instrumentation off, turn it on for the measured
    part only, and read the instructions from the dump."""
    with tempfile.TemporaryDirectory(prefix="decide-instructions-") as tmp:
        folder = Path(tmp)
        env = dict(os.environ)
        if source is not None:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(source), env.get("PYTHONPATH")]))
        child = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no",
             f"--callgrind-out-file={folder}/callgrind.%p",
             sys.executable, "-m", "bench.bench_decide_instructions", "--child", str(folder)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            _wait_for(folder / "ready", child)
            _callgrind_control(child, "-i", "on")
            (folder / "go").touch()
            _wait_for(folder / "done", child)
            _callgrind_control(child, "-i", "off")
            _callgrind_control(child, "-d")  # the dump of what was counted
            (folder / "go").unlink()
            child.wait(timeout=120)
        finally:
            if child.poll() is None:
                child.kill()
        total = sum(
            int(line.split()[1])
            for dump in folder.glob("callgrind.*")
            for line in dump.read_text(errors="replace").splitlines()
            if line.startswith("totals:")
        )
    return total / MEASURED


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", type=Path, nargs="*", default=[None])
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        run_child(args.child)
        return
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("needs valgrind and callgrind_control (Debian: apt install valgrind)")
    print("| version | instructions per transaction |\n|---|---:|")
    for source in args.source:
        count = instructions_per_transaction(source)
        print(f"| {source if source is not None else 'this checkout'} | {count:,.0f} |")


if __name__ == "__main__":
    main()
