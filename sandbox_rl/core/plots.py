"""PNG plots of a self-evolving run, from its per-step records (``monitoring.step_record``)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def _pyplot():
    # On use: matplotlib adds ~0.7 s to the CLI, which imports this module (through core.run),
    # and the backend is chosen before pyplot is imported.
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

    paths.append(_scores(plt, records, steps, folder, window))

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


def _scores(plt, records: Sequence[dict], steps: list[int], folder: Path, window: int) -> Path:
    """One panel per task: the agents' score (faint per step, solid rolling mean) and the
    heuristic's and random actions' mean on the same steps (dashed and dotted lines)."""
    tasks = list(records[0]["scores"]) if records else []
    fig, axes = plt.subplots(2, 3, figsize=(12, 6), sharex=True, sharey=True)
    for ax, task in zip(axes.flat, tasks):
        scores = [r["scores"].get(task, np.nan) for r in records]
        ax.plot(steps, scores, color="C0", alpha=0.25)
        ax.plot(steps, rolling_mean(scores, window), color="C0", label="agents")
        for kind, style, color in (("heuristic", "--", "C2"), ("random", ":", "C3")):
            values = [r.get(kind, {}).get(task, np.nan) for r in records]
            if not np.all(np.isnan(values)):
                ax.axhline(np.nanmean(values), linestyle=style, color=color, label=kind)
        ax.set(title=task, ylim=(-0.02, 1.02))
    for ax in axes.flat[len(tasks):]:
        ax.axis("off")
    if tasks:
        axes.flat[0].legend(fontsize=8, loc="best")
    fig.supxlabel("env step")
    fig.supylabel("reward (performance_score)")
    fig.suptitle(f"Per-task score (faint: per step; solid: mean of last {window}); dashed: "
                 "heuristic, dotted: random, on the same steps")
    return _save(fig, folder / "scores.png", plt)


def _save(fig, path: Path, plt) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
