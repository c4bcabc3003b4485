"""Latency plots (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from streamseg.frames import STAGES


def latency_plot(series: dict[str, np.ndarray], path: str | Path, title: str = "") -> Path:
    """Per-stage latency over the run (stacked: the stages add up to end-to-end) and each stage's distribution."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    t = series["t_s"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [1.6, 1]})
    if len(t):
        order = np.argsort(t, kind="stable")
        ax1.stackplot(t[order], *[series[s][order] for s in STAGES], labels=STAGES, alpha=0.85)
        ax1.plot(t[order], series["end_to_end"][order], color="black", lw=0.8, label="end to end")
        ax1.legend(loc="upper left", fontsize=7, ncol=3)
        data = [np.maximum(series[s], 0.01) for s in STAGES] + [series["end_to_end"]]  # log axis: floor at 10 us
        ax2.boxplot(data, vert=False, showfliers=True, flierprops={"markersize": 2})
        ax2.set_yticks(range(1, len(STAGES) + 2), list(STAGES) + ["end to end"])
        p50 = np.percentile(series["end_to_end"], 50)
        p99 = np.percentile(series["end_to_end"], 99)
        ax2.set_title(f"distribution (end to end p50 {p50:.1f} ms, p99 {p99:.1f} ms)", fontsize=10)
        ax2.set_xscale("log")
    ax1.set_xlabel("time since first frame (s)")
    ax1.set_ylabel("latency (ms), stacked by stage")
    ax1.set_title(title or "per-stage latency over time", fontsize=10)
    ax2.set_xlabel("latency (ms)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
