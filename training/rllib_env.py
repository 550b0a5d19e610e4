"""The Oasis world as RLlib's multi-agent env class (imports Ray: load it only with the extra).

RLlib builds an env from a class it is given (``config.environment(OasisRLlibEnv, ...)``) on
every env runner; a class travels by reference, so the runners import it from the package the
``runtime_env`` shipped. A name in Tune's env registry would not do: the registry keeps the id of
the first Ray job of the process, so a second Ray session there (restoring a checkpoint after
training) finds no env under the name.
"""

from __future__ import annotations

from ray.rllib.env.wrappers.pettingzoo_env import ParallelPettingZooEnv

from sandbox_rl.envs import oasis_v0


class OasisRLlibEnv(ParallelPettingZooEnv):
    """``oasis_v0.parallel_env(**env_config)`` (vector observations) as a MultiAgentEnv."""

    def __init__(self, env_config: dict | None = None) -> None:
        super().__init__(oasis_v0.parallel_env(**dict(env_config or {})))
