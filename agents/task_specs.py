"""Task specs for LLM agents: the prompt around each task's text observation and its decoding.

The text format of observations and answers belongs to the env's tasks
(``sandbox_rl.envs.tasks``: ``render`` / ``parse`` and the no-op); a spec adds what an LLM
needs around it: a fixed system prompt (the same every step, so its KV cache can be computed
once), the chat template, and the decoding settings and token budget of the task.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from sandbox_rl.agents.generation import SamplingSettings
from sandbox_rl.enums import TaskType

_ANSWER_ONLY = "Reply with the answer only, in exactly the format asked for."


def _no_start(observation: str) -> str:
    return ""


@dataclass(frozen=True)
class TaskSpec:
    """``answer_start`` begins the assistant's answer (response priming): small models follow
    an answer format far more reliably when its first words are already written. The env
    parses ``answer_start + completion``."""

    task: TaskType
    system_prompt: str
    sampling: SamplingSettings
    answer_start: Callable[[str], str] = _no_start

    def messages(self, observation: str) -> list[dict[str, str]]:
        return [{"role": "system", "content": self.system_prompt},
                {"role": "user", "content": observation}]

    def prompt(self, tokenizer, observation: str) -> str:
        """The full prompt text in the model's chat format, ready for generation."""
        chat = tokenizer.apply_chat_template(self.messages(observation), tokenize=False,
                                             add_generation_prompt=True)
        return chat + self.answer_start(observation)

    def answer(self, observation: str, completion: str) -> str:
        """The full answer the env parses: the primed start plus the model's completion."""
        return self.answer_start(observation) + completion

    def prefix(self, tokenizer) -> str:
        """The fixed start of every prompt of this task (system turn), for a prefix cache."""
        full = tokenizer.apply_chat_template(self.messages("\x00"), tokenize=False,
                                             add_generation_prompt=True)
        return full[: full.index("\x00")]


def _first_panel_user(observation: str) -> str:
    found = re.search(r"^#(\d+)\b", observation, flags=re.MULTILINE)
    return f"user {found.group(1)}:" if found else "user "


def _fixed(start: str) -> Callable[[str], str]:
    return lambda observation: start


TASK_SPECS: dict[TaskType, TaskSpec] = {
    TaskType.CONTENT_GENERATION: TaskSpec(
        TaskType.CONTENT_GENERATION,
        "You write posts for a brand account on a social media platform. Posts are short, "
        "concrete and about one topic. Reply with the post text only.",
        SamplingSettings(max_new_tokens=60, temperature=0.7, top_p=0.9, stop=("\n\n",))),
    TaskType.BEHAVIOR_ANALYSIS: TaskSpec(
        TaskType.BEHAVIOR_ANALYSIS,
        "You predict what users of a social platform will do in the next hour. "
        "For every user listed, answer one line 'user N: CLASS' with CLASS one of inactive, "
        "lurk, positive, negative, post. " + _ANSWER_ONLY,
        SamplingSettings(max_new_tokens=96, stop=("\n\n",)), _first_panel_user),
    TaskType.NETWORK_OPTIMIZATION: TaskSpec(
        TaskType.NETWORK_OPTIMIZATION,
        "You tune a social platform's feed recommender to maximise engagement. Answer with four "
        "weights between 0 and 1: 'interest=X recency=X popularity=X following=X'. " + _ANSWER_ONLY,
        SamplingSettings(max_new_tokens=32, stop=("\n",)), _fixed("interest=")),
    TaskType.TREND_PREDICTION: TaskSpec(
        TaskType.TREND_PREDICTION,
        "You forecast which topics will get the most activity on a social platform next hour. "
        "Answer 'ranking: TOPIC > TOPIC > ...' using the topic names given. " + _ANSWER_ONLY,
        SamplingSettings(max_new_tokens=48, stop=("\n",)), _fixed("ranking:")),
    TaskType.USER_ENGAGEMENT: TaskSpec(
        TaskType.USER_ENGAGEMENT,
        "You run notification campaigns that bring users of a social platform back without "
        "tiring them. Answer 'segment=TOPIC intensity=N' (N from 0 to 3) or 'none'. "
        + _ANSWER_ONLY,
        SamplingSettings(max_new_tokens=16, stop=("\n",)), _fixed("segment=")),
}


def spec(task: TaskType | str) -> TaskSpec:
    return TASK_SPECS[TaskType.parse(task)]
