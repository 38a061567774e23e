"""Write floods on a PostgreSQL 15 primary alone and with a streaming replica of it attached.

Makes the primary and the replica as tests/replication.py does (``initdb``, ``pg_basebackup
-R``), then in each round runs loadtest/bench.py's log-metric-c64 and log-batch-c16 against a
gateway on the primary with the replica stopped, and again with it streaming and given to the
gateway (``--read-database-url``), reporting CPU per point of the gateway, the primary and the
replica (which replays every write).

    python loadtest/replica_flood_bench.py --rounds 2 --out /tmp/replica-flood
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.replication import StreamingPair  # noqa: E402

PORT = 5410
SCENARIOS = ["log-metric-c64", "log-batch-c16"]


def postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postmaster.pid").read_text().split()[0])


def wait_healthy(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"{url} did not become healthy")


def flood(pair: StreamingPair, with_replica: bool, out: Path) -> dict:
    command = [sys.executable, "-m", "gateway", "serve", "--port", str(PORT), "--database-url", pair.primary_url,
               "--data-dir", str(out / "gateway-data")]
    if with_replica:
        command += ["--read-database-url", pair.replica_url]
    gateway = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{PORT}"
        wait_healthy(url)
        result = out / f"{'replica' if with_replica else 'primary'}-{time.time_ns()}.json"
        cpu = ["--cpu-of", f"gateway={gateway.pid}", "--cpu-of", f"primary={postmaster_pid(pair.primary_dir)}"]
        if with_replica:
            cpu += ["--cpu-of", f"replica={postmaster_pid(pair.replica_dir)}"]
        subprocess.run([sys.executable, str(ROOT / "loadtest" / "bench.py"), "--url", url, "--scenario", *SCENARIOS,
                        "--duration", "10", "--warmup", "2", *cpu, "--json", str(result)], check=True)
        return json.loads(result.read_text())
    finally:
        gateway.terminate()
        gateway.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default="/tmp/replica-flood")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pair = StreamingPair()
    try:
        for round_number in range(1, args.rounds + 1):
            for with_replica in (False, True):
                if with_replica:
                    pair.start_replica()
                else:
                    pair.stop_replica()
                report = flood(pair, with_replica, out)
                for scenario in report["scenarios"]:
                    cpu = {name: round(value, 2) for name, value in (scenario.get("cpu_us_per_point") or {}).items()}
                    print(f"round {round_number} {'primary + replica' if with_replica else 'primary alone':18s} "
                          f"{scenario['scenario']:15s} points/s {scenario['points_per_s']:>10,.0f}  CPU µs/point {cpu}",
                          flush=True)
    finally:
        pair.close()


if __name__ == "__main__":
    main()
