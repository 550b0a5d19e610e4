"""Counterfactual scoring: the rewards one step would have given under other actions.

A snapshot taken just before a step (``sandbox_rl.envs.state.snapshot``) holds the world, the
tasks' state and the generator's state. Loading it into a scratch copy of the env and stepping
that copy with other actions gives the rewards those actions would have earned, with the same
random draws; with the actions the live env took, it reproduces the live rewards exactly. The
live env is never touched. This is how an LLM completion is scored (the PPO reward "model",
``process_task``): each candidate is one restore and one world step on the scratch env.

Rewards computed with the step's own draws are right for *evaluating* an action (every arm sees
the same world), but wrong for *choosing* one: among many candidates, the best-scoring is the one
that got lucky with the draws of that very step, a future the agent could not have seen.
:meth:`Counterfactual.expected_rewards` and :meth:`Counterfactual.score_action` therefore replay
the step under ``draws`` fresh generators seeded apart from the snapshot's own generator state,
the same ones for every candidate (common random numbers), and average.

Actions take the form ``env.step`` takes (structured, or text for the env's text agents, parsed
by the same task parsers); an agent left out of ``actions`` does its no-op.
"""

from __future__ import annotations

import weakref
from typing import Any, Iterable, Sequence

import numpy as np

from sandbox_rl.envs.oasis_v0 import OasisParallelEnv
from sandbox_rl.envs.state import EnvSnapshot, snapshot


class Counterfactual:
    """Scores actions against snapshots of one live env, on one scratch env built once."""

    def __init__(self, env: OasisParallelEnv) -> None:
        if not isinstance(env, OasisParallelEnv):
            raise ValueError(f"expected an OasisParallelEnv, got {type(env).__name__}")
        self._env = weakref.ref(env)
        # Built with no trace and no render mode: scoring must not write to the live trace.
        self.scratch = OasisParallelEnv(**env.constructor_kwargs())
        self._checked: weakref.WeakSet[EnvSnapshot] = weakref.WeakSet()

    def rewards(self, snap: EnvSnapshot, actions: dict[str, Any],
                agents: Sequence[str] | None = None) -> dict[str, float]:
        """The rewards of ``agents`` (default: every live agent of ``snap``) had the step after
        ``snap`` been taken with ``actions``."""
        self._load(snap)
        return self._step(actions, agents)

    def score_candidates(self, snap: EnvSnapshot, agent: str, candidates: Iterable[Any],
                         actions: dict[str, Any] | None = None) -> list[float]:
        """``agent``'s reward for each candidate action, the others doing ``actions`` (absent
        agents: their no-op); one restore and one step per candidate."""
        others = dict(actions or {})
        return [self.rewards(snap, {**others, agent: c}, [agent])[agent] for c in candidates]

    def expected_rewards(self, snap: EnvSnapshot, agent: str, candidates: Iterable[Any],
                         actions: dict[str, Any] | None = None, draws: int = 4,
                         seed: int = 0) -> list[float]:
        """``agent``'s reward for each candidate, the others doing ``actions``, averaged over
        ``draws`` replays of the step after ``snap`` under fresh generators (a ``None``
        candidate is the agent's no-op).

        The generators are seeded from ``(seed, draw, step)`` and replace the snapshot's own
        generator state, so no candidate is scored on the random draws the world actually made
        in that step. Every candidate sees the same ``draws`` generators.
        """
        if not isinstance(draws, int) or isinstance(draws, bool) or draws < 1:
            raise ValueError(f"invalid draws={draws!r}: expected an integer >= 1")
        candidates, others = list(candidates), dict(actions or {})
        totals = np.zeros(len(candidates))
        for draw in range(draws):
            state = _fresh_state(seed, draw, int(snap.meta["num_cycles"]))
            for i, candidate in enumerate(candidates):
                self._load(snap)
                self.scratch._np_random.bit_generator.state = state
                step = others if candidate is None else {**others, agent: candidate}
                totals[i] += self._step(step, [agent])[agent]
        return [float(t / draws) for t in totals]

    def score_action(self, agent: str, action: Any, draws: int = 4, seed: int = 0) -> float:
        """``agent``'s expected reward for ``action`` if the live env stepped now, every other
        agent doing its no-op, over ``draws`` fresh generators (as :meth:`expected_rewards`:
        never the live env's own next draws); computed on the scratch env."""
        return self.expected_rewards(snapshot(self._live()), agent, [action], None, draws,
                                     seed)[0]

    # ------------------------------------------------------------------ internals
    def _live(self) -> OasisParallelEnv:
        env = self._env()
        if env is None:
            raise RuntimeError("the live env of this Counterfactual no longer exists")
        return env

    def _load(self, snap: EnvSnapshot) -> None:
        if not isinstance(snap, EnvSnapshot):
            raise ValueError(f"expected an EnvSnapshot (from state.snapshot), got "
                             f"{type(snap).__name__}")
        # A snapshot's arrays are read-only, so one full check per snapshot suffices.
        if snap not in self._checked:
            self.scratch._check_state(snap.meta, snap.arrays)
            self._checked.add(snap)
        self.scratch._apply_state(snap.meta, snap.arrays)

    def _step(self, actions: dict[str, Any], agents: Sequence[str] | None) -> dict[str, float]:
        scratch = self.scratch
        if not scratch.agents:
            raise ValueError("the state is of a finished episode: there is no step to score")
        if not isinstance(actions, dict):
            raise ValueError(f"actions must be a dict agent -> action, got {type(actions).__name__}")
        agents = list(scratch.agents if agents is None else agents)
        unknown = sorted(set(agents) - set(scratch.agents))
        if unknown:
            raise ValueError(f"cannot score unknown or finished agents {unknown}; "
                             f"live agents are {scratch.agents}")
        _, _, rewards = scratch._advance(actions, agents)
        return rewards


def _fresh_state(seed: int, draw: int, step: int) -> dict:
    """A PCG64 state drawn from ``(seed, draw, step)`` alone (the env's generator type)."""
    return np.random.PCG64(np.random.SeedSequence([seed, draw, step, 0x5EED])).state


# One scratch env per live env, kept only as long as the live env lives.
_EVALUATORS: weakref.WeakKeyDictionary[OasisParallelEnv, Counterfactual] = \
    weakref.WeakKeyDictionary()


def evaluator(env: OasisParallelEnv) -> Counterfactual:
    """The :class:`Counterfactual` of ``env``, built on first use and reused."""
    cf = _EVALUATORS.get(env)
    if cf is None:
        cf = _EVALUATORS[env] = Counterfactual(env)
    return cf


def counterfactual_rewards(env: OasisParallelEnv, snap: EnvSnapshot, actions: dict[str, Any],
                           agents: Sequence[str] | None = None) -> dict[str, float]:
    """The rewards ``agents`` (default all) would get had the step after ``snap`` been taken
    with ``actions`` (missing agents: no-op); computed on a scratch copy, ``env`` untouched."""
    return evaluator(env).rewards(snap, actions, agents)


def score_action(env: OasisParallelEnv, agent: str, action: Any, draws: int = 4,
                 seed: int = 0) -> float:
    """The reward ``agent`` would expect for ``action`` if ``env`` stepped now with every other
    agent doing its no-op, over ``draws`` fresh generators (never ``env``'s own next draws);
    computed on a scratch copy, ``env`` untouched."""
    return evaluator(env).score_action(agent, action, draws, seed)
