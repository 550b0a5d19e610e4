"""One SB3 PPO policy shared by all five agents of the PettingZoo env, through SuperSuit.

    sandbox-rl train supersuit --timesteps 200000 --seed 0 --out runs/supersuit

Parameter sharing needs one observation space and one action space for every agent; the five
roles have Box observations of different lengths and mixed action spaces (MultiDiscrete for
content, behaviour and engagement, Box for network and trend). The wrapper chain:

1. ``action_lambda_v1``: every action space becomes ``Box(-1, 1, (k,))`` with one component per
   action dimension. A Box dimension maps linearly to its bounds; a MultiDiscrete dimension with
   ``n`` choices reads its component ``x`` as choice ``min(floor((x + 1) / 2 * n), n - 1)``, so
   a uniform ``x`` is a uniform choice.
2. ``pad_action_space_v0``: the Boxes are padded to the longest (10); each agent reads its first
   ``k`` components.
3. ``pad_observations_v0`` (zero padding to the longest observation, 62) and
   ``agent_indicator_v0`` (a one-hot of the agent), so the shared network knows whose turn it is.

Why a Box for everything rather than a MultiDiscrete for everything: a shared MultiDiscrete
would have to discretise the continuous actions (recommender weights, topic scores) and give
each agent choices it does not have, which plain SB3 PPO cannot mask; a Gaussian head per
component serves both kinds, and the ordinal reading of categories only costs the policy a
sharper mean where categories have no order (topics).

Training worlds are seeded ``seed .. seed + n_envs - 1``; evaluation plays the shared policy,
the heuristics and random actions on the held-out ``eval_seeds`` and prints one row per agent.
"""

from __future__ import annotations

import time
import warnings
from functools import partial

import numpy as np
import torch
from gymnasium import spaces

from sandbox_rl.envs import oasis_v0
from sandbox_rl.training import sb3
from sandbox_rl.training.common import import_optional, prepare_out_dir, save_config
# The config lives with the other trainers' (the CLI reads it without importing this module).
from sandbox_rl.training.configs import SharedPolicyConfig
from sandbox_rl.training.evaluation import EvalReport, evaluate_parallel
from sandbox_rl.training.sb3 import TrainResult


# ---------------------------------------------------------------------- the shared spaces
def unit_box(space: spaces.Space) -> spaces.Box:
    """The ``Box(-1, 1, (k,))`` that stands for a 1-D Box or MultiDiscrete action space."""
    if not isinstance(space, (spaces.Box, spaces.MultiDiscrete)) or len(space.shape) != 1:
        raise ValueError(f"parameter sharing supports 1-D Box and MultiDiscrete actions, "
                         f"got {space}")
    return spaces.Box(-1.0, 1.0, shape=space.shape, dtype=np.float32)


def from_unit(action: np.ndarray, space: spaces.Space) -> np.ndarray:
    """A shared-policy action in [-1, 1]^k as an action of ``space`` (see the module doc)."""
    u = (np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0) + 1.0) / 2.0
    if isinstance(space, spaces.MultiDiscrete):
        return np.minimum((u * space.nvec).astype(np.int64), space.nvec - 1)
    return (space.low + u * (space.high - space.low)).astype(space.dtype)


def shared_spaces(env):
    """Wrap a vector-mode Oasis ParallelEnv so every agent has the same spaces (SuperSuit)."""
    ss = import_optional("supersuit", "sb3")
    env = ss.action_lambda_v1(env, from_unit, unit_box)
    env = ss.pad_action_space_v0(env)
    env = ss.pad_observations_v0(env)
    return ss.agent_indicator_v0(env)


def make_shared_env(users: int, steps: int):
    return shared_spaces(oasis_v0.parallel_env(num_users=users, max_cycles=steps))


def make_vec_env(cfg: SharedPolicyConfig):
    """The shared-space env as an SB3 VecEnv: n_envs worlds x five agent rows."""
    ss = import_optional("supersuit", "sb3")
    # The optional sb3 extra, as supersuit; this module imports without it.
    from stable_baselines3.common.vec_env import VecMonitor

    venv = ss.pettingzoo_env_to_vec_env_v1(make_shared_env(cfg.users, cfg.episode_steps))
    venv = ss.concat_vec_envs_v1(venv, cfg.n_envs, num_cpus=0, base_class="stable_baselines3")
    with warnings.catch_warnings():
        # SB3 asks the vector env for render_mode, which SuperSuit's does not forward; harmless.
        warnings.filterwarnings("ignore", message="The `render_mode` attribute is not defined")
        return VecMonitor(seedable(venv))


def seedable(venv):
    """SuperSuit's SB3 wrapper forwards ``seed()`` to a Gymnasium VectorEnv, which has none, so
    ``PPO(seed=...)`` fails; keep the seed for the next reset instead, as SB3's own VecEnvs do."""
    # The optional sb3 extra (make_vec_env checks it); this module imports without it.
    from supersuit.vector.sb3_vector_wrapper import SB3VecEnvWrapper

    class SeedableSB3VecEnv(SB3VecEnvWrapper):
        pending_seed: int | None = None

        def seed(self, seed: int | None = None):
            self.pending_seed = seed
            return [None] * self.num_envs

        def reset(self, seed=None, options=None):
            seed, self.pending_seed = (self.pending_seed if seed is None else seed), None
            observations, self.reset_infos = self.venv.reset(seed=seed, options=options)
            return observations

    return SeedableSB3VecEnv(venv.venv)


# ---------------------------------------------------------------------- train and evaluate
def train(cfg: SharedPolicyConfig) -> TrainResult:
    """Train the shared PPO policy, save model and checkpoints, evaluate on held-out seeds."""
    sb3 = import_optional("stable_baselines3", "sb3")
    # The optional sb3 extra (checked above); this module imports without it.
    from stable_baselines3.common.callbacks import CheckpointCallback

    out = prepare_out_dir(cfg.out, cfg.overwrite, "model.zip")
    save_config(cfg, out / "config.json")
    torch.set_num_threads(cfg.threads)
    venv = make_vec_env(cfg)
    model = sb3.PPO("MlpPolicy", venv, learning_rate=cfg.learning_rate, n_steps=cfg.n_steps,
                    batch_size=cfg.batch_size, n_epochs=cfg.n_epochs, gamma=cfg.gamma,
                    ent_coef=cfg.ent_coef, seed=cfg.seed, tensorboard_log=str(out / "tb"),
                    device="cpu", verbose=0)
    checkpoints = CheckpointCallback(max(cfg.checkpoint_every // venv.num_envs, 1),
                                     str(out / "checkpoints"), name_prefix="ppo_shared")
    start = time.perf_counter()
    try:
        model.learn(cfg.timesteps, callback=checkpoints, progress_bar=cfg.progress,
                    tb_log_name="ppo_shared")
    finally:
        venv.close()
    train_s = time.perf_counter() - start
    model.save(out / "model.zip")
    report = evaluate(model, cfg)
    report.save(out / "eval.json")
    return TrainResult(out, report, int(model.num_timesteps), train_s)


def shared_player(model):
    """The deterministic shared policy as a multi-agent policy of the wrapped env."""
    def act(observations: dict) -> dict:
        agents = list(observations)
        actions, _ = model.predict(np.stack([observations[a] for a in agents]), deterministic=True)
        return dict(zip(agents, actions))
    return act


def evaluate(model, cfg: SharedPolicyConfig) -> EvalReport:
    raw = partial(oasis_v0.parallel_env, num_users=cfg.users, max_cycles=cfg.eval_steps)
    players = {"learned": (partial(make_shared_env, cfg.users, cfg.eval_steps),
                           shared_player(model)),
               "heuristic": (raw, "heuristic"), "random": (raw, "random")}
    return evaluate_parallel(players, cfg.eval_seeds, cfg.eval_steps,
                             title="SuperSuit + SB3 PPO, one policy for five agents: "
                                   "held-out reward")


def report(result: TrainResult, console=None) -> None:
    sb3.report(result, console, unit="agent-steps")
