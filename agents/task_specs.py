"""Task specs for LLM agents: the prompt around each task's text observation and its decoding.

The text format of observations and answers belongs to the env's tasks
(``sandbox_rl.envs.tasks``: ``render`` / ``parse`` and the no-op); a spec adds what an LLM
needs around it: a fixed system prompt (the same every step, so its KV cache can be computed
once), the chat template, and the decoding settings and token budget of the task.
"""

from __future__ import annotations

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

    def completion(self, observation: str, answer: str) -> str:
        """The completion that makes :meth:`answer` return ``answer`` (the primed start cut
        off); a training target for answers written in full, e.g. a heuristic's action."""
        start = self.answer_start(observation)
        return answer[len(start):] if answer.startswith(start) else answer

    def prefix(self, tokenizer) -> str:
        """The fixed start of every prompt of this task (system turn), for a prefix cache."""
        full = tokenizer.apply_chat_template(self.messages("\x00"), tokenize=False,
                                             add_generation_prompt=True)
        return full[: full.index("\x00")]


def _fixed(start: str) -> Callable[[str], str]:
    return lambda observation: start


# No concrete example answers: a 135M model copies them verbatim, and identical answers give
# a learner nothing to compare. The format is said in words, not with placeholders: the model
# copied 'ranking: TOPIC > TOPIC > ...' as readily as an example. Every task stops at its stop
# string or the end-of-turn token, in rollouts, evaluation and the live sandbox alike (they
# all decode through these specs).
TASK_SPECS: dict[TaskType, TaskSpec] = {
    TaskType.CONTENT_GENERATION: TaskSpec(
        TaskType.CONTENT_GENERATION,
        "You write posts for a brand account on a social media platform. Posts are short, "
        "concrete and about one topic. Reply with the post text only.",
        SamplingSettings(max_new_tokens=60, temperature=0.7, top_p=0.9, stop=("\n\n",))),
    TaskType.BEHAVIOR_ANALYSIS: TaskSpec(
        TaskType.BEHAVIOR_ANALYSIS,
        "You predict what users of a social platform will do in the next hour. Answer one line "
        "per user, in the order the users are listed, each line one word: inactive, lurk, "
        "positive, negative or post. " + _ANSWER_ONLY,
        SamplingSettings(max_new_tokens=64, stop=("\n\n",))),
    TaskType.NETWORK_OPTIMIZATION: TaskSpec(
        TaskType.NETWORK_OPTIMIZATION,
        "You tune a social platform's feed recommender to maximise engagement. Answer with the "
        "four weights interest, recency, popularity and following, each written as its name, "
        "an equals sign and a number between 0 and 1, separated by spaces. " + _ANSWER_ONLY,
        SamplingSettings(max_new_tokens=32, stop=("\n",)), _fixed("interest=")),
    TaskType.TREND_PREDICTION: TaskSpec(
        TaskType.TREND_PREDICTION,
        "You forecast which topics will get the most activity on a social platform next hour. "
        "Answer 'ranking:' followed by every topic name from the list once, most active first, "
        "separated by '>'. " + _ANSWER_ONLY,
        SamplingSettings(max_new_tokens=48, stop=("\n",)), _fixed("ranking:")),
    TaskType.USER_ENGAGEMENT: TaskSpec(
        TaskType.USER_ENGAGEMENT,
        "You run notification campaigns that bring users of a social platform back without "
        "tiring them. Answer 'segment=' followed by one segment name from the list, then "
        "' intensity=' followed by a number from 0 to 3; or 'segment=none' for no campaign. "
        + _ANSWER_ONLY,
        SamplingSettings(max_new_tokens=16, stop=("\n",)), _fixed("segment=")),
}


def spec(task: TaskType | str) -> TaskSpec:
    return TASK_SPECS[TaskType.parse(task)]
