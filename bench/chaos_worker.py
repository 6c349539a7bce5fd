"""`fraudstream worker` whose XGBoost hangs while a flag file exists: `make chaos`'s fault.

    python -m bench.chaos_worker --hang-while /tmp/flag worker --status-file ...

Every XGBoost scoring call (scores, explained scores) first blocks while the file exists,
as a model stuck in native code would; then the normal worker runs, unchanged. Chaos only:
the product has no hook for this.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fraudstream.models.scorers import XGBoostScorer
from fraudstream.stream.cli import main as fraudstream_main

#: How often a hung call looks whether the flag is gone.
POLL_S = 0.05


def hang_while(flag: Path, method: Callable[..., Any]) -> Callable[..., Any]:
    """`method`, blocking first while `flag` exists."""

    @functools.wraps(method)
    def hung(*args: Any, **kwargs: Any) -> Any:
        while flag.exists():
            time.sleep(POLL_S)
        return method(*args, **kwargs)

    return hung


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hang-while", type=Path, required=True)
    args, worker_argv = parser.parse_known_args()
    for name in ("score_batch", "score_explained"):
        setattr(XGBoostScorer, name, hang_while(args.hang_while, getattr(XGBoostScorer, name)))
    return fraudstream_main(worker_argv)


if __name__ == "__main__":
    sys.exit(main())
