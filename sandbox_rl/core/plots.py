"""PNG plots of a self-evolving run, from its per-step records (``monitoring.step_record``).

The figures are matplotlib ``Figure`` objects saved to files, never pyplot's: they need no
display and no backend chosen (the PNG is drawn by Agg), and importing this module leaves the
backend of the process (a notebook's, say) as it was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from sandbox_rl.training.protocol import HEURISTIC_TEXT


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
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    steps = [r["step"] for r in records]
    paths = []

    paths.append(_scores(records, steps, folder, window))

    fig = Figure(figsize=(8, 3.5))
    ax = fig.subplots()
    kinds = sorted({e["type"] for r in records for e in r["events"]})
    for row, kind in enumerate(kinds):
        xs = [r["step"] for r in records for e in r["events"] if e["type"] == kind]
        ax.scatter(xs, [row] * len(xs), marker="|", s=200)
    ax.set_yticks(range(len(kinds)), kinds)
    ax.set(xlabel="env step", title="Evolution events", xlim=(0, max(steps, default=1) + 1))
    paths.append(_save(fig, folder / "events.png"))

    fig = Figure(figsize=(12, 3.5))
    axes = fig.subplots(1, 3)
    for ax, key in zip(axes, ("total_posts", "total_edges", "total_interactions")):
        ax.plot(steps, [r["network"].get(key, np.nan) for r in records])
        ax.set(xlabel="env step", title=key)
    fig.suptitle("Network growth")
    paths.append(_save(fig, folder / "network.png"))
    return paths


def _scores(records: Sequence[dict], steps: list[int], folder: Path, window: int) -> Path:
    """One panel per task: the agents' score (faint per step, solid rolling mean) and the
    heuristic's (dash-dot: its action written as text, where the env reads text through models)
    and random actions' mean on the same steps (dashed and dotted lines)."""
    tasks = list(records[0]["scores"]) if records else []
    fig = Figure(figsize=(12, 6))
    axes = fig.subplots(2, 3, sharex=True, sharey=True)
    for ax, task in zip(axes.flat, tasks):
        scores = [r["scores"].get(task, np.nan) for r in records]
        ax.plot(steps, scores, color="C0", alpha=0.25)
        ax.plot(steps, rolling_mean(scores, window), color="C0", label="agents")
        for kind, style, color in (("heuristic", "--", "C2"), (HEURISTIC_TEXT, "-.", "C1"),
                                   ("random", ":", "C3")):
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
                 "heuristic (dash-dot: written as text), dotted: random, on the same steps")
    return _save(fig, folder / "scores.png")


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
