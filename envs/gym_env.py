"""Single-agent Gymnasium view of the Oasis env: the learner plays one task role."""

from __future__ import annotations

from typing import Any

import gymnasium

from sandbox_rl.enums import TaskType
from sandbox_rl.envs.heuristics import heuristic_action
from sandbox_rl.envs.oasis_v0 import OasisParallelEnv


class SelfEvolvingOasisEnv(gymnasium.Env):
    """``SelfEvolvingOasis-v0``: one role of the Oasis platform, the other four heuristic.

    ## Description
    The world, rewards and spaces are those of ``sandbox_rl.envs.oasis_v0`` (see its docstring);
    the learner acts as the agent named by ``task`` and the other four roles are played by the
    heuristic baselines of ``sandbox_rl.envs.heuristics`` on their vector observations.

    ## Action Space / Observation Space
    Those of the chosen task in ``oasis_v0`` (``Text`` spaces when ``obs_mode="text"``).

    ## Rewards
    The chosen task's reward, in [0, 1].

    ## Starting State / Episode End
    As ``oasis_v0``: a world drawn from the seed; truncation after ``max_cycles`` steps. The id is
    registered with ``max_episode_steps=200``, the default ``max_cycles``, and the ``TimeLimit``
    that ``gymnasium.make`` adds follows a ``max_cycles`` passed to it, so both truncate at the
    same step and ``spec.max_episode_steps`` is the episode length; an explicit
    ``max_episode_steps`` other than 200 is kept (see ``sandbox_rl.envs.registration``).

    ## Arguments
    ``task`` (a ``TaskType`` or its value, default ``"trend_prediction"``), ``render_mode``
    (None, "ansi", "human" or "rgb_array", the frame ``RecordVideo`` records; see
    ``sandbox_rl.envs.render``) and every argument of ``oasis_v0.parallel_env``.

    ## Version History
    * v0: initial release.
    """

    metadata = {"render_modes": ["ansi", "human", "rgb_array"], "render_fps": 4}

    def __init__(self, task: TaskType | str = TaskType.TREND_PREDICTION,
                 render_mode: str | None = None, **kwargs: Any) -> None:
        self.task = TaskType.parse(task).value
        self.render_mode = render_mode
        self.world = OasisParallelEnv(render_mode=render_mode, text_agents=[self.task], **kwargs)
        self.observation_space = self.world.observation_space(self.task)
        self.action_space = self.world.action_space(self.task)
        self._others = [a for a in self.world.possible_agents if a != self.task]

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        obs, infos = self.world.reset(seed=seed, options=options)
        # One generator for everything: the world's, which Gymnasium's checker inspects.
        self._np_random = self.world._np_random
        return obs[self.task], infos[self.task]

    def step(self, action: Any):
        actions = {a: heuristic_action(a, self.world.vector_observation(a)) for a in self._others}
        actions[self.task] = action
        obs, rewards, terms, truncs, infos = self.world.step(actions)
        return (obs[self.task], rewards[self.task], terms[self.task], truncs[self.task],
                infos[self.task])

    def render(self):
        return self.world.render()

    def close(self) -> None:
        self.world.close()
