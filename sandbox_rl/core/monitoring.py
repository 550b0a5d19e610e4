"""Per-step metrics of a sandbox as JSON lines and TensorBoard scalars.

``<log_dir>/metrics.jsonl`` holds one object per env step (scores per task, each task's answer
as the env parsed it, network state, evolution events, memory); ``<log_dir>/tensorboard/`` the
same numbers as scalars. Files are opened on the first step, not at construction.
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter

from sandbox_rl.training.protocol import HEURISTIC_TEXT


def peak_rss_bytes() -> int:
    """Peak resident memory of this process (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def step_record(result: dict[str, Any]) -> dict[str, Any]:
    """The flat, JSON-serialisable record of one ``simulate_step`` result."""
    network = result["network_state"]
    return {
        "step": result["step"],
        "scores": {task: r["performance_score"] for task, r in result["tasks"].items()},
        "heuristic": {task: r["heuristic_score"] for task, r in result["tasks"].items()},
        "random": {task: r["random_score"] for task, r in result["tasks"].items()},
        # the heuristic's action written as text, for the tasks whose text the env reads
        HEURISTIC_TEXT: {task: r[f"{HEURISTIC_TEXT}_score"] for task, r in result["tasks"].items()
                         if f"{HEURISTIC_TEXT}_score" in r},
        "adapters": {task: r["adapter"] for task, r in result["tasks"].items()},
        # What each agent said: a score alone does not tell a majority class from the rule.
        "answers": {task: r["response"].text for task, r in result["tasks"].items()},
        "parse_errors": {task: r["parse_error"] for task, r in result["tasks"].items()
                         if r["parse_error"]},
        "network": {k: v for k, v in network.items() if isinstance(v, (int, float))},
        "evolution_step": result["evolution_stats"]["evolution_step"],
        "events": result["events"],
        "seconds": result.get("seconds"),
        "peak_rss_bytes": peak_rss_bytes(),
    }


class Monitor:
    def __init__(self, log_dir: str | Path) -> None:
        self.log_dir = Path(log_dir)
        self._jsonl = None
        self._writer = None

    def _open(self, first_step: int) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._jsonl = open(self.log_dir / "metrics.jsonl", "a", encoding="utf-8")
        # A run resumed from a checkpoint logs its steps again: TensorBoard hides the earlier
        # files' events from the first step logged here on (no step shown twice).
        self._writer = SummaryWriter(str(self.log_dir / "tensorboard"), purge_step=first_step)

    def log(self, result: dict[str, Any]) -> dict[str, Any]:
        record = step_record(result)
        if self._jsonl is None:
            self._open(record["step"])
        self._jsonl.write(json.dumps(record, default=str) + "\n")
        self._jsonl.flush()
        step = record["step"]
        for task, score in record["scores"].items():
            self._writer.add_scalar(f"score/{task}", score, step)
        for key, value in record["network"].items():
            self._writer.add_scalar(f"network/{key}", value, step)
        self._writer.add_scalar("evolution/step", record["evolution_step"], step)
        self._writer.add_scalar("evolution/events", len(record["events"]), step)
        self._writer.add_scalar("memory/peak_rss_mb", record["peak_rss_bytes"] / 2**20, step)
        return record

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
            self._writer.close()
            self._jsonl = self._writer = None
