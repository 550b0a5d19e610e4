"""The env a sandbox runs: the Oasis parallel env in text mode, as one long episode.

A module of its own because two places build it: the sandbox (``self_evolving_oasis``) and the
state reader (``state.load``, which builds the replacement aside and may not import the facade
that imports it).
"""

from __future__ import annotations

from sandbox_rl.core.config import SelfEvolvingConfig
from sandbox_rl.envs import oasis_v0

# The env runs as one long episode; a sandbox that reaches it starts a new episode.
EPISODE_STEPS = 1_000_000


def new_env(config: SelfEvolvingConfig):
    """The sandbox's env, not reset yet (a new sandbox resets it with its seed; a loaded
    state replaces its whole state)."""
    return oasis_v0.parallel_env(num_users=config.num_users, max_cycles=EPISODE_STEPS,
                                 obs_mode="text", attach_tweets=False)
