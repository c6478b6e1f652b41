"""The report as a picture: throughput and latency per server, one row of charts per scenario.

Drawn with matplotlib's Agg backend (no display needed) into a PNG beside the
markdown report. matplotlib is a dev dependency; without it the report is
written and the chart is skipped with a note.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

Row = dict[str, Any]


def _timed(rows: list[Row]) -> dict[str, list[Row]]:
    """Rows with a rate and latencies, by scenario, in the order they ran."""
    out: dict[str, list[Row]] = {}
    for row in rows:
        if "msgs_per_s" in row and "failed" not in row and "skipped" not in row:
            out.setdefault(row["scenario"], []).append(row)
    return out


def draw(rows: list[Row], path: Path, title: str = "") -> Path | None:
    """Write the chart to ``path``; None when there is nothing to draw."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = _timed(rows)
    if not scenarios:
        return None
    heights = [max(1.6, 0.32 * len(subset) + 0.9) for subset in scenarios.values()]
    fig, axes = plt.subplots(
        len(scenarios),
        2,
        figsize=(14, sum(heights) + 0.8),
        gridspec_kw={"height_ratios": heights, "width_ratios": [3, 2]},
        squeeze=False,
    )
    for (scenario, subset), (rate_ax, lat_ax) in zip(scenarios.items(), axes, strict=True):
        labels = [r["label"] for r in subset]
        ypos = list(range(len(subset)))
        rates = [r["msgs_per_s"] for r in subset]
        colors = ["tab:blue" if r["server"] == "framework" else "tab:gray" for r in subset]
        rate_ax.barh(ypos, rates, color=colors)
        rate_ax.set_yticks(ypos, labels, fontsize=8)
        rate_ax.invert_yaxis()
        unit = "deliveries/s" if "room" in scenario else "msgs/s"
        rate_ax.set_title(f"{scenario}: {unit}", fontsize=10, loc="left")
        rate_ax.ticklabel_format(axis="x", style="plain")
        for y, value in zip(ypos, rates, strict=True):
            rate_ax.text(value, y, f" {value:,.0f}", va="center", fontsize=7)
        p50 = [r["latency_us"].get("p50") or 0.0 for r in subset]
        p99 = [r["latency_us"].get("p99") or 0.0 for r in subset]
        lat_ax.barh([y - 0.2 for y in ypos], p50, height=0.4, label="p50", color="tab:green")
        lat_ax.barh([y + 0.2 for y in ypos], p99, height=0.4, label="p99", color="tab:orange")
        lat_ax.set_yticks(ypos, [""] * len(ypos))
        lat_ax.invert_yaxis()
        lat_ax.set_title("latency, microseconds", fontsize=10, loc="left")
        lat_ax.legend(
            fontsize=7, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=2, frameon=False
        )
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
