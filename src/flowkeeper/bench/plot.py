"""PNG timeline of probe success over time, one line per recovery method."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def timeline_png(
    runs: list[dict[str, Any]],
    path: Path,
    title: str,
    window_s: float,
    zero_label: str = "ovs-vswitchd starts",
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.5), dpi=110)
    for run in runs:
        points = [(t, share) for t, share in run["timeline"] if -1.0 <= t <= window_s]
        if not points:
            continue
        xs, ys = zip(*points, strict=True)
        rec = run.get("recovery_s")
        label = run["method"] if rec is None else f"{run['method']} ({rec:.2f} s)"
        ax.step(xs, [100 * y for y in ys], where="post", label=label, linewidth=1.2)
    ax.axvline(0, color="grey", linestyle="--", linewidth=0.8)
    ax.text(0.02, 3, zero_label, color="grey", fontsize=8)
    ax.set_xlabel(f"seconds since: {zero_label}")
    ax.set_ylabel("probe pairs answered (%)")
    ax.set_ylim(-5, 105)
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
