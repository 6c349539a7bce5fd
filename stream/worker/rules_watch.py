"""The business rules a worker decides with, re-read when their file changes.

A rules file is edited by people while workers run, so a bad edit is a normal input: the
new file is validated in full before it replaces anything, and an invalid one leaves the
last good rule set in force, logged once per content. A worker that starts on an invalid
file decides with no rules (models and thresholds alone) until the file is fixed, rather
than not starting: a typo in a rule must not stop fraud decisions.

Card and merchant ids in the file are written in clear; the worker's transactions carry
pseudonyms (features/pseudonyms.py), so every loaded set is mapped through them once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from fraudstream.features.pseudonyms import IdPseudonyms
from fraudstream.thresholds.rules.engine import NO_RULES
from fraudstream.thresholds.rules.fileformat import RulesError, load_rules

log = logging.getLogger(__name__)

#: What identifies one content of the file without reading it: inode, size, mtime.
FileStamp = tuple[int, int, int] | None


def _stamp(path: Path) -> FileStamp:
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_ino, status.st_size, status.st_mtime_ns


class RulesWatch:
    """`rule_set` is the last valid content of `path`; call `check()` to follow edits."""

    def __init__(
        self,
        path: Path,
        ids: IdPseudonyms,
        on_invalid: Callable[[str], None] = lambda _why: None,
    ) -> None:
        self.path = path
        self._ids = ids
        self._on_invalid = on_invalid
        self._stamp: FileStamp = None
        self.rule_set = NO_RULES
        #: Why the file on disk is not in force; None while it is.
        self.invalid_because: str | None = None
        self.check()

    def check(self) -> bool:
        """Load the file if it changed since the last look; True when a new set took over."""
        stamp = _stamp(self.path)
        if stamp is not None and stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            loaded = load_rules(self.path)
        except (RulesError, OSError) as error:
            if stamp is None and self.invalid_because is not None:
                return False  # still missing: said so already
            self.invalid_because = str(error)
            log.error(
                "rules file %s is invalid, keeping rules %s: %s",
                self.path, self.rule_set.version or "none", error,
            )  # fmt: skip
            self._on_invalid(str(error))
            return False
        self.rule_set = loaded.with_ids(card=self._ids.card, merchant=self._ids.merchant)
        self.invalid_because = None
        log.warning("rules %s in force from %s (%d rules)",
                    loaded.version, self.path, len(loaded.rules))  # fmt: skip
        return True
