"""RLlib multi-agent PPO on the PettingZoo env: one RLModule per agent (extra ``rllib``).

    sandbox-rl train rllib --timesteps 40000 --num-env-runners 1 --seed 0 --out runs/rllib
    sandbox-rl train rllib --address HOST:PORT --num-env-runners 8 ...   # on a Ray cluster

The five roles keep their own spaces (``ParallelPettingZooEnv`` exposes them per agent), and
each maps to its own module (``MultiRLModuleSpec``) on RLlib's new API stack. Without
``--address`` a local Ray starts; with it the driver joins that cluster. Either way the package
and its corpus travel to the workers in a ``runtime_env`` with the thread count set
(``training/ray_runtime.py``), so a node needs Ray and the dependencies, not this package.
Training worlds are seeded from ``seed`` (RLlib adds the env runner's index, and sub-envs count
up from there); evaluation plays the deterministic modules, the heuristics and random actions on
the held-out ``eval_seeds``, one Ray task per (player, world), spread over the cluster.

The run folder holds ``tb/`` (TensorBoard scalars of every iteration), ``checkpoints/`` (RLlib's
``save_to_path`` format), ``checkpoint/`` (the final one; :func:`restore` rebuilds the algorithm
from it), ``config.json``, ``eval.json`` and ``placement.json`` (the node of every env runner).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch.utils.tensorboard import SummaryWriter

from sandbox_rl.enums import TaskType
from sandbox_rl.envs import oasis_v0
from sandbox_rl.training.common import import_optional, prepare_out_dir, save_config
# The config lives with the other trainers' (the CLI reads it without importing this module).
from sandbox_rl.training.configs import RLlibConfig
from sandbox_rl.training.evaluation import EvalReport, evaluate_parallel
from sandbox_rl.training.ray_runtime import check_address, ray_map, ray_session


@dataclass(frozen=True)
class TrainResult:
    out: Path
    report: EvalReport
    timesteps: int
    iterations: int
    train_s: float
    placement: dict


def make_rllib_env(env_config: dict):
    """RLlib's env creator: the vector-mode Oasis ParallelEnv as a MultiAgentEnv."""
    # rllib_env imports ray, the optional rllib extra (train() checks it); this module does not.
    from sandbox_rl.training.rllib_env import OasisRLlibEnv

    return OasisRLlibEnv(env_config)


def build_config(cfg: RLlibConfig):
    """The PPOConfig: one module per agent, 1:1 agent -> module mapping."""
    # ray (and rllib_env, which imports it): the optional rllib extra (train() checks it).
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    from sandbox_rl.training.rllib_env import OasisRLlibEnv

    agents = [t.value for t in TaskType]  # the env's agents, in its order
    env_config = {"num_users": cfg.users, "max_cycles": cfg.episode_steps}
    return (PPOConfig()
            .environment(OasisRLlibEnv, env_config=env_config)  # a class: training/rllib_env.py
            .multi_agent(policies=set(agents), policy_mapping_fn=_agent_is_module)
            .rl_module(rl_module_spec=MultiRLModuleSpec(
                rl_module_specs={a: RLModuleSpec() for a in agents}))
            .env_runners(num_env_runners=cfg.num_env_runners,
                         num_envs_per_env_runner=cfg.num_envs_per_env_runner,
                         num_cpus_per_env_runner=1)
            .learners(num_learners=cfg.num_learners,
                      num_gpus_per_learner=cfg.num_gpus_per_learner)
            .training(lr=cfg.learning_rate, gamma=cfg.gamma, num_epochs=cfg.num_epochs,
                      train_batch_size_per_learner=cfg.train_batch_size,
                      minibatch_size=cfg.minibatch_size, entropy_coeff=cfg.entropy_coeff)
            .debugging(seed=cfg.seed, log_level="ERROR"))


def _agent_is_module(agent_id: str, *args: Any, **kwargs: Any) -> str:
    return agent_id


def train(cfg: RLlibConfig) -> TrainResult:
    """Train the five modules, checkpoint, evaluate on held-out seeds; Ray is shut down after."""
    import_optional("ray", "rllib")
    import_optional("ray.rllib", "rllib")
    check_address(cfg.address)  # before anything is written
    out = prepare_out_dir(cfg.out, cfg.overwrite, "checkpoint")
    save_config(cfg, out / "config.json")
    torch.set_num_threads(cfg.threads)
    with ray_session(cfg.address, cfg.threads, cfg.num_cpus):
        algo = build_config(cfg).build_algo()
        try:
            placement = env_runner_placement(algo)
            steps, iterations, train_s = _train_loop(algo, cfg, out)
            algo.save_to_path(str((out / "checkpoint").resolve()))
            modules = {t.value: algo.get_module(t.value) for t in TaskType}
        finally:
            algo.stop()  # frees the env runners' CPUs for the evaluation's tasks
        report = evaluate(modules, cfg)
    report.save(out / "eval.json")
    (out / "placement.json").write_text(json.dumps(placement, indent=2) + "\n")
    return TrainResult(out, report, steps, iterations, train_s, placement)


def env_runner_placement(algo) -> dict:
    """The driver's node and the node of every remote env runner (Ray node ids)."""
    import ray  # the optional rllib extra (train() checked it); this module imports without it

    def node(_runner) -> str:
        return ray.get_runtime_context().get_node_id()

    runners = algo.env_runner_group.foreach_env_runner(node, local_env_runner=False)
    return {"driver": ray.get_runtime_context().get_node_id(), "env_runners": list(runners)}


def restore(run: str | Path):
    """The algorithm saved in ``run`` (a run folder, or a checkpoint folder in it), rebuilt on
    the Ray this process has initialised (``Algorithm.from_checkpoint``)."""
    # The optional rllib extra; this module imports without it.
    from ray.rllib.algorithms.algorithm import Algorithm

    path = Path(run)
    if (path / "checkpoint").is_dir():
        path = path / "checkpoint"
    if not path.is_dir():
        raise FileNotFoundError(f"no RLlib checkpoint folder at {path}")
    return Algorithm.from_checkpoint(str(path.resolve()))


def _train_loop(algo, cfg: RLlibConfig, out: Path) -> tuple[int, int, float]:
    """Iterate until ``timesteps`` env steps are sampled; log scalars, checkpoint on schedule."""
    writer = SummaryWriter(str(out / "tb"))
    steps, iterations, next_checkpoint = 0, 0, cfg.checkpoint_every
    start = time.perf_counter()
    with _progress(cfg.timesteps, cfg.progress) as advance:
        while steps < cfg.timesteps:
            result = algo.train()
            iterations += 1
            new_steps = int(result["env_runners"]["num_env_steps_sampled_lifetime"])
            for key, value in _scalars(result):
                writer.add_scalar(key, value, new_steps)
            advance(new_steps - steps, result["env_runners"].get("episode_return_mean"))
            steps = new_steps
            if steps >= next_checkpoint and steps < cfg.timesteps:
                algo.save_to_path(str((out / "checkpoints" / f"steps_{steps}").resolve()))
                next_checkpoint += cfg.checkpoint_every
    writer.close()
    return steps, iterations, time.perf_counter() - start


def _scalars(result: dict, prefix: str = ""):
    """The numeric leaves of RLlib's result dict for the env runners and learners."""
    for key, value in result.items():
        if prefix == "" and key not in ("env_runners", "learners"):
            continue
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _scalars(value, name + "/")
        elif isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
            if np.isfinite(value):
                yield name, float(value)


class _progress:
    """A rich progress bar over env steps with the mean episode return (nothing when off)."""

    def __init__(self, total: int, show: bool) -> None:
        self.total, self.show, self.bar = total, show, None

    def __enter__(self):
        if self.show:
            self.bar = Progress(TextColumn("rllib ppo"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[ret]}"), TimeRemainingColumn(),
                                console=Console(stderr=True), transient=True)
            self.bar.__enter__()
            self.task = self.bar.add_task("steps", total=self.total, ret="")
        return self.advance

    def advance(self, steps: int, episode_return: float | None) -> None:
        if self.bar is not None:
            ret = "" if episode_return is None else f"return {episode_return:.1f}"
            self.bar.update(self.task, advance=steps, ret=ret)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


# ---------------------------------------------------------------------- evaluation
def module_player(modules: dict, env):
    """Deterministic actions of each agent's RLModule, mapped to the env's bounds as RLlib does."""
    # ray, the optional rllib extra (train() checked it); this module imports without it.
    from ray.rllib.utils.spaces.space_utils import unsquash_action

    spaces = {agent: env.action_space(agent) for agent in modules}  # not the env: it travels

    def act(observations: dict) -> dict:
        actions = {}
        with torch.no_grad():
            for agent, obs in observations.items():
                module = modules[agent]
                out = module.forward_inference({"obs": torch.as_tensor(obs[None])})
                dist = module.get_inference_action_dist_cls().from_logits(
                    out["action_dist_inputs"])
                action = dist.to_deterministic().sample()[0].numpy()
                actions[agent] = unsquash_action(action, spaces[agent])
        return actions
    return act


def evaluate(modules: dict, cfg: RLlibConfig) -> EvalReport:
    """The deterministic modules, the heuristics and random actions on the held-out worlds,
    each (player, world) a Ray task (the session :func:`train` holds)."""
    raw = partial(oasis_v0.parallel_env, num_users=cfg.users, max_cycles=cfg.eval_steps)
    env = raw()  # for the action spaces
    try:
        learned = module_player(modules, env)
    finally:
        env.close()
    players = {"learned": (raw, learned), "heuristic": (raw, "heuristic"),
               "random": (raw, "random")}
    return evaluate_parallel(players, cfg.eval_seeds, cfg.eval_steps,
                             title="RLlib PPO, one module per agent: held-out reward",
                             map_worlds=ray_map)


def report(result: TrainResult, console=None) -> None:
    if console is None:
        console = Console()
    result.report.print(console)
    console.print(f"trained {result.timesteps:,} env steps ({result.iterations} iterations) in "
                  f"{result.train_s:.0f} s; run folder {result.out} (checkpoint/, "
                  f"checkpoints/, tb/, eval.json, placement.json)")
