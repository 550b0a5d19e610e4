"""Answers as a sequence of choices: constrained decoding for tasks whose answers are closed sets.

A task whose valid answers are built from a few words (a class per user, a ranking of the
topics, a segment and an intensity) says so with :class:`Choices`; :func:`generate_batch`
then only lets a row write tokens that continue a valid answer, and ends the row once the
answer is complete. A task spec's request raises the token budget to the longest answer in
the model's tokenizer (``Choices.max_tokens``), so a closed-set answer is never cut short.
Each choice is picked by the model (greedily or sampled, as the request says) among the tokens
that continue the remaining options: for one-token options this is classifying by the model's
next-token probabilities, the standard way to use an LM as a classifier, and every answer
parses.

Written here rather than with a grammar library (llguidance, outlines): a ranking names every
topic exactly once, and a permutation of ten names has no compact regular or context-free
grammar; a token trie over the options with a "used" set does it in a few lines. Options are
matched in the tokenizer's own tokenization of each option string (what the model writes
unconstrained), which the constructor checks is prefix-free so a completed option is never
also the start of another.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass


@dataclass(frozen=True)
class Choices:
    """``slots`` consecutive choices; slot 1 among ``first``, later slots among ``rest`` (the
    same options, usually with a separator written in front). ``distinct``: an option (by
    index) is chosen at most once, e.g. a ranking."""

    first: tuple[str, ...]
    rest: tuple[str, ...] = ()
    slots: int = 1
    distinct: bool = False

    def __post_init__(self) -> None:
        if not self.first or not all(isinstance(o, str) and o for o in self.first):
            raise ValueError(f"invalid first={self.first!r}: expected non-empty option strings")
        if not (isinstance(self.slots, int) and self.slots >= 1):
            raise ValueError(f"invalid slots={self.slots!r}: expected an int >= 1")
        if self.slots > 1 and len(self.rest) != len(self.first):
            raise ValueError(f"invalid rest={self.rest!r}: expected one option per option of first "
                             f"({len(self.first)}) when slots > 1")
        if self.distinct and self.slots > len(self.first):
            raise ValueError(f"invalid slots={self.slots}: more than the {len(self.first)} options "
                             "when each is chosen at most once")

    def max_tokens(self, tokenizer) -> int:
        """Tokens of the longest answer in ``tokenizer``: decoding ends within this many."""
        longest = lambda options: max(map(len, _token_options(tokenizer, options)))
        return longest(self.first) + (self.slots - 1) * (longest(self.rest) if self.slots > 1 else 0)

    def answers(self) -> tuple[str, ...] | None:
        """Every complete answer when there is one choice to make (e.g. a campaign: a segment
        with an intensity, or none); None when the answers are sequences (their number grows
        as options ** slots)."""
        return self.first if self.slots == 1 else None

    def text(self, picks: list[int]) -> str:
        """The answer text of option indices ``picks`` (one per slot)."""
        return "".join((self.first if k == 0 else self.rest)[i] for k, i in enumerate(picks))


class ChoiceState:
    """Decoding state of one row: which tokens may come next, and when the answer is done."""

    def __init__(self, choices: Choices, tokenizer) -> None:
        self.choices = choices
        self.first = _token_options(tokenizer, choices.first)
        self.rest = _token_options(tokenizer, choices.rest) if choices.slots > 1 else ()
        self.picks: list[int] = []
        self.position = 0
        self.candidates = self._open()

    @property
    def done(self) -> bool:
        return len(self.picks) == self.choices.slots

    def _options(self) -> tuple[tuple[int, ...], ...]:
        return self.first if not self.picks else self.rest

    def _open(self) -> list[int]:
        used = set(self.picks) if self.choices.distinct else set()
        return [i for i in range(len(self.choices.first)) if i not in used]

    def allowed(self) -> list[int]:
        """Token ids that continue a valid answer (empty once done)."""
        if self.done:
            return []
        options = self._options()
        return sorted({options[i][self.position] for i in self.candidates})

    def advance(self, token: int) -> None:
        """Record ``token``; it must be one of :meth:`allowed`."""
        options = self._options()
        matching = [i for i in self.candidates if options[i][self.position] == token]
        if self.done or not matching:
            raise ValueError(f"token {token} does not continue a valid answer")
        self.position += 1
        finished = [i for i in matching if len(options[i]) == self.position]
        if finished:  # prefix-free options: the one finished option is the only match left
            self.picks.append(finished[0])
            self.position = 0
            self.candidates = self._open()
        else:
            self.candidates = matching


# Every request of a closed-set task needs its options' tokens (the budget, then the decoding
# state): tokenised and checked once per tokenizer, not once per row and step.
@functools.lru_cache(maxsize=64)
def _token_options(tokenizer, options: tuple[str, ...]) -> tuple[tuple[int, ...], ...]:
    ids = tuple(tuple(tokenizer(o, add_special_tokens=False)["input_ids"]) for o in options)
    for i, a in enumerate(ids):
        if not a:
            raise ValueError(f"option {options[i]!r} has no tokens")
        for j, b in enumerate(ids):
            if i != j and b[: len(a)] == a:
                raise ValueError(f"options {options[i]!r} and {options[j]!r}: the tokens of one "
                                 "start the other, so a finished choice would be ambiguous")
    return ids
