"""Named pause points, so a test can SIGKILL a real ``build-pairs run`` at an exact moment.

Off unless ``MEDPREF_PAUSE_AT`` is set. ``MEDPREF_PAUSE_AT=shard_written:2`` makes the second arrival
at ``pause_point("shard_written")`` create the file named by ``MEDPREF_PAUSE_FILE`` and then sleep, so
the test sees the file and kills the process there. Kill points that timing alone cannot reach
reliably (between a shard's rename and its marker, inside the rejects write, just before
``manifest.json``) are exactly the ones that prove the resume logic, hence these hooks.
``MEDPREF_TRACE_FILE`` appends ``<point> <pid>`` at every point passed, so a test can see which
processes wrote.
"""

from __future__ import annotations

import os
import time
from collections import Counter

_ARRIVALS: Counter[str] = Counter()
PAUSE_SECONDS = 600.0  # a paused process that nobody kills gives up eventually


def pause_point(name: str) -> None:
    trace = os.environ.get("MEDPREF_TRACE_FILE")
    if trace:  # a witness for tests: which process passed which point (e.g. who committed a chunk)
        with open(trace, "a") as f:
            f.write(f"{name} {os.getpid()}\n")
    spec = os.environ.get("MEDPREF_PAUSE_AT")
    if not spec:
        return
    point, _, nth = spec.partition(":")
    if point != name:
        return
    _ARRIVALS[name] += 1
    if _ARRIVALS[name] != int(nth or 1):
        return
    flag = os.environ.get("MEDPREF_PAUSE_FILE")
    if flag:
        with open(flag, "w") as f:
            f.write(f"{name}:{_ARRIVALS[name]} pid {os.getpid()}\n")
    time.sleep(PAUSE_SECONDS)
    os._exit(99)
