"""The one place where the Gymnasium env ids are registered."""

from __future__ import annotations

import gymnasium

ENV_ID = "SelfEvolvingOasis-v0"


def register_envs() -> None:
    """Register ``SelfEvolvingOasis-v0`` (idempotent)."""
    if ENV_ID not in gymnasium.registry:
        gymnasium.register(
            id=ENV_ID,
            entry_point="sandbox_rl.envs.gym_env:SelfEvolvingOasisEnv",
            disable_env_checker=False,
        )
