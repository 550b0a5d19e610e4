"""Task specs for LLM agents: the prompt around each task's text observation and its decoding.

The text format of observations and answers belongs to the env's tasks
(``sandbox_rl.envs.tasks``: ``render`` / ``parse`` and the no-op); a spec adds what an LLM
needs around it: a fixed system prompt (the same every step, so its KV cache can be computed
once), the chat template, the decoding settings and token budget of the task, and, for the
tasks whose answers are a closed set, the choices the answer is decoded from
(``agents/choices.py``): every answer then parses, written in the env's own answer format
(each task's ``format_action``), the format its heuristic's answers are trained in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Callable

from sandbox_rl.agents.choices import Choices
from sandbox_rl.agents.generation import GenerationRequest, SamplingSettings
from sandbox_rl.enums import TaskType
from sandbox_rl.envs.platform import BEHAVIOURS
from sandbox_rl.envs.topics import NUM_TOPICS, TOPIC_NAMES

_ANSWER_ONLY = "Reply with the answer only, in exactly the format asked for."


def _no_start(observation: str) -> str:
    return ""


def _free_text(observation: str) -> None:
    return None


def _as_written(observation: str, answer: str) -> str:
    return answer


@dataclass(frozen=True)
class TaskSpec:
    """``answer_start`` begins the assistant's answer (response priming): small models follow
    an answer format far more reliably when its first words are already written. The env
    parses ``to_env(observation, answer_start + completion)``; ``to_env`` is the identity
    unless the model answers in terms of its observation (user_engagement: a row number of
    the table), and ``from_env`` is its inverse (an env answer, e.g. the heuristic's, as the
    model would write it)."""

    task: TaskType
    system_prompt: str
    sampling: SamplingSettings
    answer_start: Callable[[str], str] = _no_start
    choices: Callable[[str], Choices | None] = _free_text
    to_env: Callable[[str, str], str] = _as_written
    from_env: Callable[[str, str], str] = _as_written
    # Raised when the prompt or answer format changes so that adapters trained before it were
    # trained for another task (``agents/answer_formats.py`` warns when one is loaded).
    format_version: int = 1
    format_change: str = ""

    def messages(self, observation: str) -> list[dict[str, str]]:
        return [{"role": "system", "content": self.system_prompt},
                {"role": "user", "content": observation}]

    def prompt(self, tokenizer, observation: str) -> str:
        """The full prompt text in the model's chat format, ready for generation."""
        chat = tokenizer.apply_chat_template(self.messages(observation), tokenize=False,
                                             add_generation_prompt=True)
        return chat + self.answer_start(observation)

    def answer(self, observation: str, completion: str) -> str:
        """The full answer the env parses: the primed start plus the model's completion, in
        the env's answer format."""
        return self.to_env(observation, self.answer_start(observation) + completion)

    def completion(self, observation: str, answer: str) -> str:
        """The completion that makes :meth:`answer` return ``answer`` (in the model's format,
        the primed start cut off); a training target for answers written in full, e.g. a
        heuristic's action."""
        start, written = self.answer_start(observation), self.from_env(observation, answer)
        return written[len(start):] if written.startswith(start) else written

    def closed_answers(self, observation: str) -> list[str] | None:
        """Every valid full answer to ``observation`` when the task's answer is one choice of a
        closed set (user_engagement: 31 campaigns), else None."""
        choices = self.choices(observation)
        options = choices.answers() if choices is not None else None
        return None if options is None else [self.answer(observation, o) for o in options]

    def request(self, tokenizer, observation: str, adapter: str | None,
                sampling: SamplingSettings | None = None) -> GenerationRequest:
        """The generation request of ``observation`` through ``adapter``: the prompt, its fixed
        prefix, the task's choices and ``sampling`` (default the spec's), its token budget
        raised to the longest answer of the choices in this tokenizer (a closed-set answer is
        never cut short)."""
        sampling, choices = sampling or self.sampling, self.choices(observation)
        if choices is not None:
            longest = choices.max_tokens(tokenizer)
            if longest > sampling.max_new_tokens:
                sampling = replace(sampling, max_new_tokens=longest)
        return GenerationRequest(self.prompt(tokenizer, observation), adapter, sampling,
                                 self.prefix(tokenizer), choices)

    def prefix(self, tokenizer) -> str:
        """The fixed start of every prompt of this task (system turn), for a prefix cache."""
        full = tokenizer.apply_chat_template(self.messages("\x00"), tokenize=False,
                                             add_generation_prompt=True)
        return full[: full.index("\x00")]


def _fixed(start: str) -> Callable[[str], str]:
    return lambda observation: start


def _fixed_choices(choices: Choices) -> Callable[[str], Choices]:
    return lambda observation: choices


def _class_lines(observation: str) -> Choices | None:
    """One class per panel user, one per line (the observation asks for ``Answer N lines``)."""
    asked = re.search(r"Answer (\d+) lines", observation)
    if asked is None or int(asked.group(1)) < 1:
        return None
    return Choices(BEHAVIOURS, tuple("\n" + c for c in BEHAVIOURS), int(asked.group(1)))


# After the answer start 'ranking:': every topic once, separated by ' > '.
_RANKING = Choices(tuple(" " + t for t in TOPIC_NAMES), tuple(" > " + t for t in TOPIC_NAMES),
                   len(TOPIC_NAMES), distinct=True)
# After the answer start 'row=': no campaign, or a row of the segment table and a non-zero
# intensity. A row number rather than the segment's name: the base model names one segment
# (health) whatever the table says, even in a content-free prompt, and in closed loop keeps
# tiring it; of a numbered table it mostly answers row 1 or none (closed loop, training worlds
# 0-2: row 1 on 12 of 24 states, none on 8), and the table lists the least tired, largest
# segments first. Rows are numbered 1-9, then 0: with '10' the model continued its '1' to '0'.
_CAMPAIGN = Choices(("none",) + tuple(f"{row % 10} intensity={level}"
                                      for row in range(1, NUM_TOPICS + 1) for level in (1, 2, 3)))
_TABLE_ROW = re.compile(rf"^(\d+)\. ({'|'.join(TOPIC_NAMES)}):", re.MULTILINE)
_ROW_ANSWER = re.compile(r"\s*row\s*=\s*(none|\d+)", re.IGNORECASE)
_SEGMENT_ANSWER = re.compile(r"\s*segment\s*=\s*(none|[a-z]+)", re.IGNORECASE)


def _table_rows(observation: str) -> dict[str, str]:
    """Row number (as written) -> segment name, from the observation's numbered table."""
    return dict(_TABLE_ROW.findall(observation))


def _relabel(answer: str, pattern: re.Pattern, labels: dict[str, str], key: str) -> str:
    """``answer`` with the label ``pattern`` finds at its start replaced by ``key=`` and its
    entry in ``labels`` ('none' stays none); passed on as written when there is none."""
    found = pattern.match(answer)
    if found is None:
        return answer
    label, rest = found.group(1).lower(), answer[found.end():]
    if label == "none":
        return f"{key}=none"
    return answer if label not in labels else f"{key}={labels[label]}{rest}"


def _row_to_segment(observation: str, answer: str) -> str:
    """'row=K ...' -> 'segment=NAME ...' with NAME the segment of row K in ``observation``;
    'row=none' -> 'segment=none'. An answer naming no row of the table is passed on as
    written: the env refuses it with its reason."""
    return _relabel(answer, _ROW_ANSWER, _table_rows(observation), "segment")


def _segment_to_row(observation: str, answer: str) -> str:
    """Inverse of :func:`_row_to_segment` (an env answer, e.g. the heuristic's, as a row)."""
    rows = {segment: row for row, segment in _table_rows(observation).items()}
    return _relabel(answer, _SEGMENT_ANSWER, rows, "row")


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
        SamplingSettings(max_new_tokens=64, stop=("\n\n",)), choices=_class_lines),
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
        SamplingSettings(max_new_tokens=48, stop=("\n",)), _fixed("ranking:"),
        _fixed_choices(_RANKING), format_version=2,
        format_change="format 2 lists the topics by their weighted share over the last six "
                      "hours, format 1 by the last hour's share"),
    TaskType.USER_ENGAGEMENT: TaskSpec(
        TaskType.USER_ENGAGEMENT,
        "You run notification campaigns that bring users of a social platform back without "
        "tiring them. Answer 'row=' followed by the number of one row of the segment table, "
        "then ' intensity=' followed by a number from 1 (low) to 3 (high); or 'row=none' for "
        "no campaign. " + _ANSWER_ONLY,
        SamplingSettings(max_new_tokens=16, stop=("\n",)), _fixed("row="),
        _fixed_choices(_CAMPAIGN), _row_to_segment, _segment_to_row, format_version=2,
        format_change="format 2 answers a row of the numbered segment table, format 1 a "
                      "segment's name"),
}


def spec(task: TaskType | str) -> TaskSpec:
    return TASK_SPECS[TaskType.parse(task)]
