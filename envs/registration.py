"""The one place where the Gymnasium env ids are registered.

``SelfEvolvingOasis-v0`` is registered with ``max_episode_steps=DEFAULT_MAX_CYCLES`` (200), the
env's own truncation length, so ``gymnasium.make(ENV_ID).spec.max_episode_steps`` is the episode
length. The env truncates itself after ``max_cycles`` steps, and the ``TimeLimit`` that
``gymnasium.make`` adds follows it: ``gymnasium.make(ENV_ID, max_cycles=500)`` truncates after
500 steps (by both) and its ``spec.max_episode_steps`` is 500. An explicit ``max_episode_steps``
other than 200 is kept as given, so the episode ends at the shorter of the two limits; ``-1``
leaves the ``TimeLimit`` out.
"""

from __future__ import annotations

import gymnasium
from gymnasium.envs.registration import WrapperSpec

ENV_ID = "SelfEvolvingOasis-v0"
DEFAULT_MAX_CYCLES = 200  # oasis_v0's default max_cycles and the registered max_episode_steps


def register_envs() -> None:
    """Register ``SelfEvolvingOasis-v0`` (idempotent)."""
    if ENV_ID not in gymnasium.registry:
        gymnasium.register(
            id=ENV_ID,
            entry_point="sandbox_rl.envs.gym_env:SelfEvolvingOasisEnv",
            max_episode_steps=DEFAULT_MAX_CYCLES,
            disable_env_checker=False,
            # Applied by ``gymnasium.make`` after its TimeLimit; it leaves no wrapper of its own.
            additional_wrappers=(WrapperSpec("TimeLimitOfMaxCycles",
                                              f"{__name__}:time_limit_of_max_cycles", {}),),
        )


def time_limit_of_max_cycles(env: gymnasium.Env) -> gymnasium.Env:
    """``env`` with the registered ``TimeLimit`` (``DEFAULT_MAX_CYCLES`` steps) replaced by one
    of the env's own ``max_cycles``; any other ``TimeLimit``, or none, is left as it is."""
    max_cycles = env.unwrapped.world.max_cycles
    if (isinstance(env, gymnasium.wrappers.TimeLimit) and max_cycles != DEFAULT_MAX_CYCLES
            and env.spec.max_episode_steps == DEFAULT_MAX_CYCLES):
        return gymnasium.wrappers.TimeLimit(env.env, max_cycles)
    return env
