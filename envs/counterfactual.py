"""Counterfactual scoring: the rewards one step would have given under other actions.

A snapshot taken just before a step (``sandbox_rl.envs.state.snapshot``) holds the world, the
tasks' state and the generator's state. Loading it into a scratch copy of the env and stepping
that copy with other actions gives the rewards those actions would have earned, with the same
random draws; with the actions the live env took, it reproduces the live rewards exactly. The
live env is never touched. This is how an LLM completion is scored (the PPO reward "model",
``process_task``): each candidate is one restore and one world step on the scratch env.

Actions take the form ``env.step`` takes (structured, or text for the env's text agents, parsed
by the same task parsers); an agent left out of ``actions`` does its no-op.
"""

from __future__ import annotations

import weakref
from typing import Any, Iterable, Sequence

from sandbox_rl.envs.oasis_v0 import OasisParallelEnv
from sandbox_rl.envs.state import EnvSnapshot


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

    def score_action(self, agent: str, action: Any) -> float:
        """``agent``'s reward for ``action`` if the live env stepped now, every other agent
        doing its no-op; computed on the scratch env."""
        env = self._live()
        meta, arrays = env._state_views()
        # Same configuration by construction, and the live env's own state: no checks needed.
        self.scratch._apply_state(meta, arrays)
        return self._step({agent: action}, [agent])[agent]

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


def score_action(env: OasisParallelEnv, agent: str, action: Any) -> float:
    """The reward ``agent`` would get for ``action`` if ``env`` stepped now with every other
    agent doing its no-op; computed on a scratch copy, ``env`` untouched."""
    return evaluator(env).score_action(agent, action)
