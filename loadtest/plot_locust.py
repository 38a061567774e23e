"""Plot throughput and latency over time from locust's CSV history, one line per server.

    python loadtest/plot_locust.py --output loadtest/results/locust.png \
        gateway=loadtest/results/gateway_stats_history.csv \
        "mlflow server=loadtest/results/mlflow_stats_history.csv"

Each argument is LABEL=PATH, PATH being the ``*_stats_history.csv`` that
``locust --csv PREFIX`` writes. The "Aggregated" rows are plotted: requests/s
answered, failures/s, the median and 95th percentile latency, and the users.
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass, field


@dataclass
class History:
    label: str
    seconds: list[float] = field(default_factory=list)
    users: list[int] = field(default_factory=list)
    rps: list[float] = field(default_factory=list)
    failures: list[float] = field(default_factory=list)
    p50: list[float | None] = field(default_factory=list)
    p95: list[float | None] = field(default_factory=list)


def _latency(text: str) -> float | None:
    return None if text in ("", "N/A") else float(text)


def read_history(label: str, path: str) -> History:
    history = History(label)
    start = None
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            if row["Name"] != "Aggregated":
                continue
            stamp = float(row["Timestamp"])
            start = stamp if start is None else start
            history.seconds.append(stamp - start)
            history.users.append(int(row["User Count"]))
            history.rps.append(float(row["Requests/s"]))
            history.failures.append(float(row["Failures/s"]))
            history.p50.append(_latency(row["50%"]))
            history.p95.append(_latency(row["95%"]))
    if not history.seconds:
        raise ValueError(f"{path}: no Aggregated rows")
    return history


def plot(histories: list[History], output: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (throughput, latency, users) = plt.subplots(
        3, 1, figsize=(10, 9), sharex=True, gridspec_kw={"height_ratios": [3, 2, 1]}
    )
    for history in histories:
        line = throughput.plot(history.seconds, history.rps, label=f"{history.label}: answered")[0]
        if any(history.failures):
            throughput.plot(
                history.seconds, history.failures, linestyle=":", color=line.get_color(), label=f"{history.label}: failed"
            )
        latency.plot(history.seconds, history.p95, color=line.get_color(), label=f"{history.label}: p95")
        latency.plot(history.seconds, history.p50, color=line.get_color(), linestyle="--", label=f"{history.label}: p50")
        users.plot(history.seconds, history.users, color=line.get_color(), label=history.label)
    throughput.set_ylabel("requests/s")
    throughput.set_title(title)
    throughput.legend(loc="upper left")
    throughput.grid(alpha=0.3)
    latency.set_ylabel("latency (ms)")
    latency.set_yscale("log")
    latency.legend(loc="upper left", fontsize="small")
    latency.grid(alpha=0.3, which="both")
    users.set_ylabel("users")
    users.set_xlabel("seconds since start")
    users.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(output, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("histories", nargs="+", metavar="LABEL=PATH")
    parser.add_argument("--output", required=True, help="PNG file to write")
    parser.add_argument("--title", default="locust: requests answered per second")
    args = parser.parse_args(argv)
    histories = []
    for item in args.histories:
        label, sep, path = item.partition("=")
        if not sep:
            parser.error(f"expected LABEL=PATH, got {item!r}")
        try:
            histories.append(read_history(label, path))
        except (OSError, ValueError, KeyError) as exc:
            print(f"plot_locust: {exc}", file=sys.stderr)
            return 1
    plot(histories, args.output, args.title)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
