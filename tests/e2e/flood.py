"""A bounded flood of writes over HTTP that remembers exactly what was acknowledged."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import aiohttp

API = "/api/2.0/mlflow"


@dataclass
class Ledger:
    """What the server acknowledged (200) and how the other answers went."""

    acknowledged: set[tuple[str, str, int, float]] = field(default_factory=set)  # (run, key, step, value)
    statuses: dict[int, int] = field(default_factory=dict)
    transport_errors: int = 0

    def count(self, status: int) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1


async def create_runs(base_url: str, count: int, experiment_name: str) -> list[str]:
    async with aiohttp.ClientSession() as session:
        async with session.post(base_url + API + "/experiments/create", json={"name": experiment_name}) as r:
            experiment_id = (await r.json())["experiment_id"]
        run_ids = []
        for _ in range(count):
            async with session.post(base_url + API + "/runs/create", json={"experiment_id": experiment_id}) as r:
                run_ids.append((await r.json())["run"]["info"]["run_id"])
        return run_ids


async def flood(
    base_url: str,
    run_ids: list[str],
    *,
    writers: int,
    duration: float,
    batch_every: int = 5,
    batch_points: int = 50,
    ledger: Ledger | None = None,
    max_requests_per_writer: int = 100_000,
) -> Ledger:
    """``writers`` tasks log metrics until ``duration``: single calls, and every
    ``batch_every``-th call a log-batch of ``batch_points`` points.

    Each writer owns its own metric key, so every (run, key, step) is unique and
    can be checked exactly afterwards.
    """
    ledger = ledger or Ledger()
    stop_at = time.monotonic() + duration
    timeout = aiohttp.ClientTimeout(total=60)

    async def writer(index: int, session: aiohttp.ClientSession) -> None:
        run_id = run_ids[index % len(run_ids)]
        key = f"w{index}"
        step = 0
        for request_number in range(max_requests_per_writer):
            if time.monotonic() >= stop_at:
                return
            if request_number % batch_every == batch_every - 1:
                points = [(step + i, float(step + i) / 7) for i in range(batch_points)]
                body = {
                    "run_id": run_id,
                    "metrics": [{"key": key, "value": v, "timestamp": 1000 + s, "step": s} for s, v in points],
                }
                path = "/runs/log-batch"
            else:
                points = [(step, float(step) / 7)]
                body = {"run_id": run_id, "key": key, "value": points[0][1], "timestamp": 1000 + step, "step": step}
                path = "/runs/log-metric"
            step += len(points)
            try:
                async with session.post(base_url + API + path, json=body) as response:
                    await response.read()
                    ledger.count(response.status)
                    if response.status == 200:
                        ledger.acknowledged.update((run_id, key, s, v) for s, v in points)
                    elif response.status in (429, 503):
                        await asyncio.sleep(0.05)
            except (aiohttp.ClientError, asyncio.TimeoutError):
                ledger.transport_errors += 1
                await asyncio.sleep(0.05)

    connector = aiohttp.TCPConnector(limit=writers)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*[writer(i, session) for i in range(writers)])
    return ledger
