"""Progress bars that also read well in a log file.

On a terminal this is tqdm's bar, redrawn in place. When stderr is not a terminal (CI, a
log file, ``nohup``), redrawing would leave one carriage-return-separated line per
update; instead the bar's state is written as a plain line at most every
``LOG_INTERVAL`` seconds, and once at the end.
"""

from __future__ import annotations

import sys

from tqdm.auto import tqdm

LOG_INTERVAL = 30.0  # seconds between two lines when stderr is not a terminal


class _Lines:
    """A file for tqdm that turns each redraw into one line."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> None:
        text = text.replace("\r", "").strip()
        if text:
            self.stream.write(text + "\n")

    def flush(self) -> None:
        self.stream.flush()


def progress_bar(total: int | None = None, desc: str = "", unit: str = "it", disable: bool = False,
             initial: int = 0) -> tqdm:  # fmt: skip
    """A tqdm bar over ``total`` items, with one line per ``LOG_INTERVAL`` seconds outside a terminal."""
    if disable or sys.stderr.isatty():
        return tqdm(total=total, desc=desc, unit=unit, disable=disable, initial=initial)
    return tqdm(total=total, desc=desc, unit=unit, initial=initial, file=_Lines(sys.stderr), ascii=True,
                mininterval=LOG_INTERVAL, maxinterval=LOG_INTERVAL, dynamic_ncols=False, ncols=100)  # fmt: skip
