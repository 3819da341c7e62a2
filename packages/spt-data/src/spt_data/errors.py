"""The one exception type of spt-data and the ``--on-error {raise,skip}`` policy.

Every message names the file, the record and the bad value, e.g.
``instances.json: annotation 17 (id 4711) of image 'b1c9.jpg': box x2=1400 > width 1280 (tolerance 1 px)``.
"""

from __future__ import annotations

import logging
from collections import Counter

__all__ = ["DataError", "OnError", "as_policy"]

_log = logging.getLogger(__name__)


class DataError(ValueError):
    """Bad input data. The message names the file, the record and the bad value."""


class OnError:
    """What a reader does with a bad record: ``raise`` (default) or ``skip``.

    ``skip`` logs a warning for each skipped record (the full :class:`DataError` message), counts it
    by what it is (``image``, ``frame``, ``annotation``: :attr:`counts`) and keeps the messages in
    :attr:`skipped`. A skipped ``annotation`` is one that belongs to no valid image (its ``image_id``
    is unknown): its object is in no record, which the log line says. Errors that make a whole file unreadable (invalid JSON,
    wrong top-level type, wrong schema version) are raised in both modes: no record can be counted.
    """

    MODES = ("raise", "skip")

    def __init__(self, mode: str = "raise", logger: logging.Logger | None = None) -> None:
        if mode not in self.MODES:
            raise ValueError(f"on_error must be one of {self.MODES}, got {mode!r}")
        self.mode = mode
        self.skipped: list[str] = []
        self.counts: Counter[str] = Counter()
        self._log = logger or _log

    @property
    def count(self) -> int:
        """Number of records skipped so far."""
        return len(self.skipped)

    def __call__(self, err: DataError, what: str = "image") -> None:
        """Raise ``err`` (mode raise) or log and count it as one skipped ``what`` (mode skip)."""
        if self.mode == "raise":
            raise err
        self.skipped.append(str(err))
        self.counts[what] += 1
        note = " (its object is left out of every record)" if what == "annotation" else ""
        self._log.warning("skipped %s: %s%s", what, err, note)

    def summary(self) -> str:
        """-> e.g. ``"2 images, 14 annotations skipped"`` or ``"0 skipped"``."""
        if not self.counts:
            return "0 skipped"
        parts = [f"{n} {what}{'s' if n != 1 else ''}" for what, n in sorted(self.counts.items())]
        return ", ".join(parts) + " skipped"

    def __repr__(self) -> str:
        return f"OnError(mode={self.mode!r}, skipped={self.count})"


def as_policy(on_error: OnError | str) -> OnError:
    """Accept ``"raise"``/``"skip"`` or an :class:`OnError` (shared so that counts add up)."""
    return on_error if isinstance(on_error, OnError) else OnError(on_error)
