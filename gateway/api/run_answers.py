"""The answers of runs/search kept by run version, so a page of unchanged runs is not read and encoded again.

A run's JSON (as runs/search shows it) is kept under the run's version
(sql/011_run_versions.sql), which every write to the run bumps in its transaction;
it is given again only for the same version. The store reads a page's versions
before the runs it does not know, so a run kept is never older than its version.
Least recently used answers go first once the bytes kept pass the bound. No I/O.
"""

from __future__ import annotations

from collections import OrderedDict


class RunAnswers:
    """Encoded runs by (run id, version), within ``max_bytes`` (0 keeps none)."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.bytes = 0
        self._kept: OrderedDict[str, tuple[int, bytes]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._kept)

    def get(self, run_id: str, version: int) -> bytes | None:
        kept = self._kept.get(run_id)
        if kept is None or kept[0] != version:
            return None
        self._kept.move_to_end(run_id)
        return kept[1]

    def put(self, run_id: str, version: int, answer: bytes) -> None:
        old = self._kept.pop(run_id, None)
        if old is not None:
            self.bytes -= len(old[1])
        if version < 0 or len(answer) > self.max_bytes:
            return
        self._kept[run_id] = (version, answer)
        self.bytes += len(answer)
        while self.bytes > self.max_bytes:
            _, (_, dropped) = self._kept.popitem(last=False)
            self.bytes -= len(dropped)
