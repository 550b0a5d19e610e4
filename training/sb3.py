"""Stable-Baselines3 PPO on one role of ``SelfEvolvingOasis-v0`` (vector observations).

    sandbox-rl train sb3 --task trend_prediction --timesteps 60000 --seed 0 --out runs/sb3-trend

The learner plays ``task``; the other four roles are played by their heuristics. Training worlds
are seeded ``seed .. seed + n_envs - 1``; afterwards the deterministic policy, the task's
heuristic and uniformly random actions each play one episode on every held-out ``eval_seeds``
world, and the table of mean reward per step (95% interval over seeds) is printed and saved.

The run folder holds ``tb/`` (TensorBoard), ``checkpoints/``, ``model.zip``, ``config.json`` and
``eval.json``. Box actions are trained in [-1, 1] (SB3 assumes symmetric, normalised action
bounds) and mapped linearly to the env's bounds, in training and in evaluation alike.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import gymnasium
import numpy as np
import torch
from rich.console import Console

from sandbox_rl.envs.registration import ENV_ID, register_envs
from sandbox_rl.training.common import import_optional, prepare_out_dir, save_config
# The config lives with the other trainers' (the CLI reads it without importing this module);
# its choices TASKS and VEC_ENVS are named here too.
from sandbox_rl.training.configs import TASKS, VEC_ENVS, SB3Config  # noqa: F401
from sandbox_rl.training.evaluation import EvalReport, evaluate_gym, gym_baselines


@dataclass(frozen=True)
class TrainResult:
    out: Path
    report: EvalReport
    timesteps: int
    train_s: float


def make_env(task: str, users: int, steps: int, normalise: bool = True) -> gymnasium.Env:
    """The vector-mode Gymnasium env of ``task``; Box actions rescaled to [-1, 1] if asked."""
    register_envs()
    env = gymnasium.make(ENV_ID, task=task, num_users=users, max_cycles=steps, obs_mode="vector")
    if normalise and isinstance(env.action_space, gymnasium.spaces.Box):
        unit = np.ones(env.action_space.shape, dtype=np.float32)
        env = gymnasium.wrappers.RescaleAction(env, -unit, unit)
    return env


def to_env_action(space: gymnasium.Space, action: np.ndarray) -> np.ndarray:
    """A policy action (in [-1, 1] for Box spaces) as the raw env's action, as RescaleAction does."""
    if not isinstance(space, gymnasium.spaces.Box):
        return action
    unit = (np.clip(action, -1.0, 1.0) + 1.0) / 2.0
    return (space.low + unit * (space.high - space.low)).astype(space.dtype)


def train(cfg: SB3Config) -> TrainResult:
    """Train PPO, save the model and checkpoints, then evaluate on the held-out seeds."""
    sb3 = import_optional("stable_baselines3", "sb3")
    # The optional sb3 extra (checked above); this module imports without it.
    from stable_baselines3.common.callbacks import CheckpointCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    out = prepare_out_dir(cfg.out, cfg.overwrite, "model.zip")
    save_config(cfg, out / "config.json")
    torch.set_num_threads(cfg.threads)
    vec_cls = {"dummy": DummyVecEnv, "subproc": SubprocVecEnv}[cfg.vec_env]
    venv = make_vec_env(partial(make_env, cfg.task, cfg.users, cfg.episode_steps),
                        n_envs=cfg.n_envs, seed=cfg.seed, vec_env_cls=vec_cls)
    model = sb3.PPO("MlpPolicy", venv, learning_rate=cfg.learning_rate, n_steps=cfg.n_steps,
                    batch_size=cfg.batch_size, n_epochs=cfg.n_epochs, gamma=cfg.gamma,
                    ent_coef=cfg.ent_coef, seed=cfg.seed, tensorboard_log=str(out / "tb"),
                    policy_kwargs={"log_std_init": cfg.log_std_init}, device="cpu", verbose=0)
    checkpoints = CheckpointCallback(max(cfg.checkpoint_every // cfg.n_envs, 1),
                                     str(out / "checkpoints"), name_prefix="ppo")
    start = time.perf_counter()
    try:
        model.learn(cfg.timesteps, callback=checkpoints, progress_bar=cfg.progress,
                    tb_log_name=f"ppo_{cfg.task}")
    finally:
        venv.close()
    train_s = time.perf_counter() - start
    model.save(out / "model.zip")
    report = evaluate(model, cfg)
    report.save(out / "eval.json")
    return TrainResult(out, report, int(model.num_timesteps), train_s)


def evaluate(model, cfg: SB3Config) -> EvalReport:
    """The trained policy, the heuristic and random actions on the held-out worlds."""
    def learned(env, seed: int):
        return lambda obs: to_env_action(env.action_space,
                                         model.predict(obs, deterministic=True)[0])

    players = {"learned": learned, **gym_baselines(cfg.task)}
    return evaluate_gym(partial(make_env, cfg.task, cfg.users, cfg.eval_steps, normalise=False),
                        cfg.task, players, cfg.eval_seeds, cfg.eval_steps,
                        title=f"SB3 PPO, {cfg.task}: held-out reward")


def report(result: TrainResult, console=None, unit: str = "steps") -> None:
    """Print the evaluation table and where the run lies (``unit`` of ``timesteps``)."""
    if console is None:
        console = Console()
    result.report.print(console)
    console.print(f"trained {result.timesteps:,} {unit} in {result.train_s:.0f} s; run folder "
                  f"{result.out} (model.zip, checkpoints/, tb/, eval.json)")
