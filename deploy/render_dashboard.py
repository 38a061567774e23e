"""Draw the gateway's Grafana dashboard as one PNG, from the same queries, with matplotlib.

Every panel of the dashboard JSON becomes a plot of its targets, each asked of Prometheus's
HTTP API (query_range) with Grafana's ``$__rate_interval`` replaced by ``--rate-interval``.
For a picture of a deployment without Grafana, or of a test run:

    python deploy/render_dashboard.py --prometheus http://127.0.0.1:9090 --minutes 15 --out dashboard.png

Needs matplotlib (the ``test`` and ``loadtest`` extras bring it).
"""

from __future__ import annotations

import argparse
import json
import math
import time
import urllib.parse
import urllib.request
from pathlib import Path

DASHBOARD = Path(__file__).resolve().parent / "grafana" / "dashboards" / "mlflow-gateway.json"


def panel_queries(dashboard: dict, rate_interval: str) -> list[tuple[dict, list[tuple[str, str]]]]:
    """Each panel with its (PromQL, legend format) pairs, ``$__rate_interval`` filled in."""
    return [
        (panel, [(target["expr"].replace("$__rate_interval", rate_interval), target.get("legendFormat", ""))
                 for target in panel.get("targets", [])])
        for panel in dashboard["panels"]
    ]


def query_range(prometheus: str, expr: str, start: float, end: float, step: float) -> list[dict]:
    """The result (a matrix) of one range query; raises RuntimeError with Prometheus's error."""
    query = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{prometheus}/api/v1/query_range?{query}", timeout=30) as response:
        answer = json.load(response)
    if answer.get("status") != "success":
        raise RuntimeError(f"{expr}: {answer.get('error')}")
    return answer["data"]["result"]


def legend(fmt: str, labels: dict[str, str]) -> str:
    text = fmt or ", ".join(f"{k}={v}" for k, v in labels.items()) or "value"
    for key, value in labels.items():
        text = text.replace("{{" + key + "}}", value)
    return text


_SCALES = {"bytes": (2**20, "MiB"), "s": (1e-3, "ms"), "percentunit": (0.01, "%")}


def render(prometheus: str, start: float, end: float, out: Path, *, step: float = 1.0,
           rate_interval: str = "1m", dashboard_path: Path = DASHBOARD) -> int:
    """Draw every panel into ``out`` (PNG); return how many series were drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dashboard = json.loads(dashboard_path.read_text())
    panels = panel_queries(dashboard, rate_interval)
    columns = 2
    rows = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(15, 2.7 * rows), squeeze=False)
    drawn = 0
    for index, (panel, targets) in enumerate(panels):
        axis = axes[index // columns][index % columns]
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")
        scale, unit_label = _SCALES.get(unit, (1.0, unit if unit not in ("short", "none") else ""))
        for expr, fmt in targets:
            for series in query_range(prometheus, expr, start, end, step):
                points = [(float(t) - start, float(v) / scale) for t, v in series["values"]]
                points = [(t, v) for t, v in points if math.isfinite(v)]
                if not points:
                    continue
                axis.plot([t for t, _ in points], [v for _, v in points], linewidth=1.2,
                          label=legend(fmt, series["metric"])[:48])
                drawn += 1
        axis.set_title(panel["title"], fontsize=10, loc="left")
        axis.set_ylabel(unit_label, fontsize=8)
        axis.tick_params(labelsize=7)
        axis.grid(alpha=0.3)
        axis.set_xlim(0, end - start)
        top = max((max(line.get_ydata(), default=0) for line in axis.lines), default=0)
        axis.set_ylim(0, top * 1.15 if top > 0 else 1)
        if axis.lines:
            axis.legend(fontsize=6, loc="upper left", ncol=2, framealpha=0.6)
    for index in range(len(panels), rows * columns):
        axes[index // columns][index % columns].set_visible(False)
    for axis in axes[-1]:
        axis.set_xlabel("seconds", fontsize=8)
    figure.suptitle(dashboard["title"] + " (drawn from Prometheus with matplotlib)", fontsize=12)
    figure.tight_layout(rect=(0, 0, 1, 0.985))
    figure.savefig(out, dpi=80)
    plt.close(figure)
    return drawn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090", help="Prometheus base URL")
    parser.add_argument("--minutes", type=float, default=15, help="window ending now (default 15)")
    parser.add_argument("--start", type=float, help="window start (Unix seconds), instead of --minutes")
    parser.add_argument("--end", type=float, help="window end (Unix seconds; default now)")
    parser.add_argument("--step", type=float, default=None, help="seconds between points (default: window/300)")
    parser.add_argument("--rate-interval", default="1m", help="what $__rate_interval stands for (default 1m)")
    parser.add_argument("--dashboard", type=Path, default=DASHBOARD, help="dashboard JSON")
    parser.add_argument("--out", type=Path, default=Path("dashboard.png"), help="PNG to write")
    args = parser.parse_args()
    end = args.end or time.time()
    start = args.start or end - args.minutes * 60
    step = args.step or max(1.0, (end - start) / 300)
    drawn = render(args.prometheus, start, end, args.out, step=step, rate_interval=args.rate_interval,
                   dashboard_path=args.dashboard)
    print(f"{args.out}: {drawn} series")


if __name__ == "__main__":
    main()
