"""What the task agents gather and answer, and how the sandbox scores it.

A module of its own so that the strategies, the LLM and the state files can all name these
types without importing one another (``evolving_llm`` imports the strategies, which must not
import it back).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Protocol, Sequence

from sandbox_rl.enums import TaskType


@dataclass(frozen=True)
class TaskResponse:
    """A task model's answer: ``text`` is what the env parses (primed start + completion)."""

    text: str
    completion: str
    completion_tokens: int
    finish_reason: str


@dataclass
class Experience:
    """One (prompt, completion, reward) tuple gathered in the env."""

    task: TaskType
    adapter: str | None
    step: int
    observation: str
    prompt: str
    completion: str
    reward: float
    actions: dict[str, str]  # every agent's action text in that step
    snapshot: Any = None  # the env state just before that step (for counterfactual scores)


class Scorer(Protocol):
    """What the sandbox provides to score text actions against the simulation."""

    def observation(self, task: TaskType) -> str:
        """The env's current text observation for ``task``."""

    def score_now(self, task: TaskType, action: str) -> float:
        """The reward ``action`` would earn if the env stepped now (others doing nothing)."""

    def score_on(self, experience: Experience, action: str) -> float:
        """The reward ``action`` would expect in the step ``experience`` came from, with the
        other agents' actions of that step, over re-seeded draws of that step."""

    def teacher_answer(self, experience: Experience) -> str:
        """The task heuristic's action in the step ``experience`` came from, as text."""


def experience_json(exp: Experience, snapshot_index: Mapping[int, int]) -> dict[str, Any]:
    """``exp`` as JSON, its snapshot by its index in ``snapshot_index`` (keyed by ``id``)."""
    return {"task": exp.task.value, "adapter": exp.adapter, "step": exp.step,
            "observation": exp.observation, "prompt": exp.prompt, "completion": exp.completion,
            "reward": exp.reward, "actions": exp.actions,
            "snapshot": snapshot_index.get(id(exp.snapshot))}


def experience_from_json(item: Mapping[str, Any], snapshots: Sequence[Any]) -> Experience:
    """Inverse of :func:`experience_json` (``item`` already checked by the state reader)."""
    snap = item["snapshot"]
    return Experience(TaskType(item["task"]), item["adapter"], int(item["step"]),
                      item["observation"], item["prompt"], item["completion"],
                      float(item["reward"]), dict(item["actions"]),
                      snapshots[snap] if snap is not None else None)
