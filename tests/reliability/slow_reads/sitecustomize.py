"""Python imports this module at start-up in the worker processes of tests/reliability
(their PYTHONPATH starts with this folder). With SKILLMIX_TEST_READ_DELAY_SECONDS set it
makes reading a corpus sleep that long per record, so that a test can kill a scan or a
mixture build while it is surely under way, however fast reading becomes, at no CPU cost.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from typing import Any

DELAY = float(os.environ.get("SKILLMIX_TEST_READ_DELAY_SECONDS") or 0)

if DELAY > 0:
    from curation.sources.records import RecordFile

    read = RecordFile.__iter__
    screened = RecordFile.screened  # the scan's path: lines a screen rules out come as ints

    def slow_read(self: RecordFile) -> Iterator[Any]:
        for record in read(self):
            time.sleep(DELAY)
            yield record

    def slow_screened(self: RecordFile, screen: Any) -> Iterator[Any]:
        for record in screened(self, screen):
            time.sleep(DELAY)
            yield record

    RecordFile.__iter__ = slow_read  # type: ignore[method-assign]
    RecordFile.screened = slow_screened  # type: ignore[method-assign]
    print(f"tests/reliability: corpus reads slowed by {DELAY}s a record", file=sys.stderr)
