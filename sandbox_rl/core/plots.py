"""PNG plots of a self-evolving run, from its per-step records (``monitoring.step_record``)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers
    import matplotlib.pyplot as plt

    return plt


def rolling_mean(values: Sequence[float], window: int) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return values
    sums = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, values.size + 1)
    lo = np.maximum(idx - window, 0)
    return (sums[idx] - sums[lo]) / (idx - lo)


def plot_run(records: Sequence[dict], folder: str | Path, window: int = 5) -> list[Path]:
    """Writes scores.png, events.png and network.png; returns their paths."""
    plt = _pyplot()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    steps = [r["step"] for r in records]
    paths = []

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for task in records[0]["scores"] if records else []:
        scores = [r["scores"].get(task, np.nan) for r in records]
        line, = ax.plot(steps, scores, alpha=0.25)
        ax.plot(steps, rolling_mean(scores, window), color=line.get_color(), label=task)
    ax.set(xlabel="env step", ylabel="reward (performance_score)", ylim=(-0.02, 1.02),
           title=f"Per-task score (faint: per step; solid: mean of last {window})")
    ax.legend(fontsize=8, loc="best")
    paths.append(_save(fig, folder / "scores.png", plt))

    fig, ax = plt.subplots(figsize=(8, 3.5))
    kinds = sorted({e["type"] for r in records for e in r["events"]})
    for row, kind in enumerate(kinds):
        xs = [r["step"] for r in records for e in r["events"] if e["type"] == kind]
        ax.scatter(xs, [row] * len(xs), marker="|", s=200)
    ax.set_yticks(range(len(kinds)), kinds)
    ax.set(xlabel="env step", title="Evolution events", xlim=(0, max(steps, default=1) + 1))
    paths.append(_save(fig, folder / "events.png", plt))

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    for ax, key in zip(axes, ("total_posts", "total_edges", "total_interactions")):
        ax.plot(steps, [r["network"].get(key, np.nan) for r in records])
        ax.set(xlabel="env step", title=key)
    fig.suptitle("Network growth")
    paths.append(_save(fig, folder / "network.png", plt))
    return paths


def _save(fig, path: Path, plt) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
