"""The configs of the ``sandbox-rl train`` entry points: the bases with the fields and checks they
share, and each trainer's own.

A trainer's config is a dataclass whose fields are its command-line flags (``--eval-seeds`` for
``eval_seeds``; ``training/common.py`` builds the flags). Its fields come in three layers:

- :class:`RunConfig`: what every run has (seed, users per world, learning rate, held-out worlds,
  threads, run folder);
- :class:`EnvPPOConfig` (:class:`SB3Config`, :class:`SharedPolicyConfig`, :class:`RLlibConfig`:
  ``train sb3``, ``train supersuit``, ``train rllib``): PPO on the env's vector observations for
  a number of env steps;
- :class:`LLMTrainerConfig` (:class:`AgentsConfig`, :class:`LLMPPOConfig`: ``train agents``,
  ``train llm-ppo``): the task LoRA adapters of a base model, and resuming an interrupted run.

A trainer re-declares a base field only to give it its own default and help (a re-declared
field keeps its place; fields without a default here have none that suits every trainer).
Each rule is checked once, in the ``__post_init__`` of the class that declares the field; a
trainer's ``__post_init__`` calls ``super().__post_init__()`` before its own checks. The fields
are keyword-only: a positional argument is refused rather than bound to a field it was not
meant for. Each trainer's module imports its config back (``sandbox_rl.training.sb3.SB3Config``
...); they live here so that the command line reads the flags and checks them without importing
a trainer (torch, the model stack). Nothing here imports an optional or heavy dependency.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from sandbox_rl.enums import TaskType
from sandbox_rl.training.common import (check_held_out, check_sb3_ppo, config_int, field,
                                        require)
from sandbox_rl.validation import OneOf, check_fields

__all__ = ["FIRST_HELD_OUT_SEED", "FIRST_VALIDATION_SEED", "HELD_OUT_SEEDS", "TASKS", "VEC_ENVS",
           "AgentsConfig", "EnvPPOConfig", "LLMPPOConfig", "LLMTrainerConfig", "RLlibConfig",
           "RunConfig", "SB3Config", "SharedPolicyConfig"]

TASKS = tuple(t.value for t in TaskType)
FIRST_VALIDATION_SEED = 900  # worlds 900-999 choose what a trainer keeps (train agents)
FIRST_HELD_OUT_SEED = 1000  # worlds 1000+ are never trained on (training/protocol.py)
HELD_OUT_SEEDS = tuple(range(1000, 1020))  # the registered held-out set
VEC_ENVS = ("dummy", "subproc")  # SB3's vector envs (train sb3)


@dataclass(kw_only=True)
class RunConfig:
    """Settings of every training run; ``MIN_USERS`` is the smallest world its family takes."""

    MIN_USERS: ClassVar[int]

    seed: int  # each trainer says what it seeds
    users: int = field(1000, "simulated users per world")
    learning_rate: float  # each trainer says of which optimiser
    eval_seeds: tuple[int, ...]  # held-out worlds
    threads: int  # torch threads
    out: str  # the run folder
    overwrite: bool = field(False, "replace a finished run in --out")

    def __post_init__(self) -> None:
        check_fields(self, {"seed": config_int(0), "users": config_int(self.MIN_USERS)},
                     normalise=False)
        require(self.learning_rate > 0, "learning_rate", self.learning_rate, "> 0")


@dataclass(kw_only=True)
class EnvPPOConfig(RunConfig):
    """Settings of the classic-RL trainers: PPO for ``timesteps`` env steps, checkpoints, a
    progress bar; evaluation episodes of ``eval_steps`` on the held-out ``eval_seeds``."""

    MIN_USERS = 10

    learning_rate: float = field(3e-4, "Adam learning rate")
    eval_seeds: tuple[int, ...] = field((1000, 1001, 1002), "held-out evaluation worlds")
    threads: int = field(1, "torch threads")
    timesteps: int  # each trainer counts its own steps
    episode_steps: int = field(200, "steps per training episode")
    gamma: float = field(0.9, "discount; rewards are mostly immediate")
    eval_steps: int = field(200, "steps per evaluation episode")
    checkpoint_every: int  # in the trainer's own steps
    progress: bool = field(True, "show a progress bar")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_fields(self, {"timesteps": config_int(1), "episode_steps": config_int(1),
                            "eval_steps": config_int(1)}, normalise=False)
        require(len(self.eval_seeds) >= 1 and all(config_int(0).accepts(s)
                                                  for s in self.eval_seeds),
                "eval_seeds", self.eval_seeds, "one or more integers >= 0")
        require(len(set(self.eval_seeds)) == len(self.eval_seeds), "eval_seeds", self.eval_seeds,
                "distinct seeds")
        require(self.threads >= 1, "threads", self.threads, "an integer >= 1")
        require(bool(str(self.out).strip()), "out", self.out, "a folder path")
        require(0 <= self.gamma <= 1, "gamma", self.gamma, "in [0, 1]")
        require(self.checkpoint_every >= 1, "checkpoint_every", self.checkpoint_every, ">= 1")


@dataclass(kw_only=True)
class LLMTrainerConfig(RunConfig):
    """Settings of the trainers of the task LoRA adapters: the base model, the tasks, the
    adapters' rank; held-out worlds 1000 and above; ``resume`` continues an interrupted run."""

    MIN_USERS = 50

    threads: int = field(2, "torch CPU threads")
    model: str = field("embedded", "base model of the task adapters")
    tasks: tuple[str, ...]  # each trainer has its own default
    lora_rank: int = field(8, "LoRA rank of the adapters")
    resume: str | None  # None: a new run; each trainer says what it keeps
    quiet: bool = field(False, "hide the progress bar")

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.resume is None or bool(str(self.resume).strip()), "resume", self.resume,
                "a run folder")
        check_fields(self, {"lora_rank": config_int(1), "threads": config_int(1)},
                     normalise=False)
        self.eval_seeds = tuple(self.eval_seeds)
        require(bool(self.eval_seeds) and all(s >= FIRST_HELD_OUT_SEED for s in self.eval_seeds)
                and len(set(self.eval_seeds)) == len(self.eval_seeds), "eval_seeds",
                self.eval_seeds, "distinct seeds >= 1000 (held out from training)")


# ---------------------------------------------------------------------- the env PPO trainers
@dataclass(kw_only=True)
class SB3Config(EnvPPOConfig):
    """Arguments of ``sandbox-rl train sb3``; every field is checked in ``__post_init__``."""

    task: str = field("trend_prediction", "the role the learner plays")
    timesteps: int = field(60_000, "environment steps to train for")
    seed: int = field(0, "seed of PPO and of the training worlds (seed .. seed + n_envs - 1)")
    out: str = field("runs/sb3", "run folder: TensorBoard logs, checkpoints, model, evaluation")
    n_envs: int = field(4, "parallel training worlds")
    vec_env: str = field("dummy", "SB3 vector env: dummy (one process) or subproc")
    n_steps: int = field(256, "steps per world per PPO rollout")
    batch_size: int = field(256, "PPO minibatch size")
    n_epochs: int = field(10, "PPO epochs per rollout")
    gamma: float = field(0.9, "discount; rewards are mostly immediate, so a short horizon "
                              "lowers the variance of the advantages")
    ent_coef: float = field(0.0, "entropy bonus")
    log_std_init: float = field(0.0, "initial log standard deviation of Box actions (in the "
                                     "[-1, 1] action scale)")
    checkpoint_every: int = field(20_000, "save a checkpoint every this many steps")

    def __post_init__(self) -> None:
        self.task = TaskType.parse(self.task).value
        super().__post_init__()
        OneOf(VEC_ENVS).check("vec_env", self.vec_env)
        check_sb3_ppo(self, self.n_steps * self.n_envs, "n_steps * n_envs")


@dataclass(kw_only=True)
class SharedPolicyConfig(EnvPPOConfig):
    """Arguments of ``sandbox-rl train supersuit``; every field is checked in ``__post_init__``."""

    timesteps: int = field(200_000, "agent-steps to train for (five per world step)")
    seed: int = field(0, "seed of PPO and of the training worlds (seed .. seed + n_envs - 1)")
    out: str = field("runs/supersuit", "run folder: TensorBoard logs, checkpoints, model, "
                                       "evaluation")
    n_envs: int = field(2, "parallel training worlds (each gives five agent rows)")
    n_steps: int = field(128, "steps per agent row per PPO rollout")
    batch_size: int = field(256, "PPO minibatch size")
    n_epochs: int = field(10, "PPO epochs per rollout")
    ent_coef: float = field(0.0, "entropy bonus")
    checkpoint_every: int = field(50_000, "save a checkpoint every this many agent-steps")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_sb3_ppo(self, 5 * self.n_envs * self.n_steps, "5 * n_envs * n_steps")


@dataclass(kw_only=True)
class RLlibConfig(EnvPPOConfig):
    """Arguments of ``sandbox-rl train rllib``; every field is checked in ``__post_init__``."""

    timesteps: int = field(40_000, "env steps to sample (each gives one step to every agent)")
    seed: int = field(0, "seed of RLlib and of the training worlds")
    out: str = field("runs/rllib", "run folder: TensorBoard logs, checkpoints, evaluation")
    address: str | None = field(None, "address of a running Ray cluster (e.g. auto); "
                                      "default: start Ray locally")
    num_env_runners: int = field(1, "remote env runners (0: sample in the driver)")
    num_envs_per_env_runner: int = field(1, "worlds per env runner")
    num_learners: int = field(0, "remote learners (0: learn in the driver)")
    num_gpus_per_learner: float = field(0.0, "GPUs per learner (the driver's with 0 learners)")
    num_cpus: int | None = field(None, "CPUs of a local Ray (default: all)")
    train_batch_size: int = field(2000, "env steps per training iteration")
    minibatch_size: int = field(250, "PPO minibatch size (agent steps of one module)")
    num_epochs: int = field(10, "PPO epochs per iteration")
    entropy_coeff: float = field(0.0, "entropy bonus")
    checkpoint_every: int = field(20_000, "save a checkpoint every this many env steps")
    threads: int = field(1, "torch threads of the driver and of every Ray worker")

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.address is None or bool(str(self.address).strip()), "address",
                self.address, "a Ray address such as auto or ray://host:10001")
        require(self.num_env_runners >= 0, "num_env_runners", self.num_env_runners, ">= 0")
        require(self.num_envs_per_env_runner >= 1, "num_envs_per_env_runner",
                self.num_envs_per_env_runner, ">= 1")
        require(self.num_learners >= 0, "num_learners", self.num_learners, ">= 0")
        require(self.num_gpus_per_learner >= 0, "num_gpus_per_learner",
                self.num_gpus_per_learner, ">= 0")
        require(self.num_cpus is None or self.num_cpus >= 1, "num_cpus", self.num_cpus,
                "an integer >= 1")
        require(self.address is None or self.num_cpus is None, "num_cpus", self.num_cpus,
                "unset with --address (a cluster's nodes declare their own CPUs)")
        require(self.threads >= 1, "threads", self.threads, "an integer >= 1")
        require(self.train_batch_size >= 2, "train_batch_size", self.train_batch_size, ">= 2")
        require(1 <= self.minibatch_size <= self.train_batch_size, "minibatch_size",
                self.minibatch_size, f"in [1, train_batch_size = {self.train_batch_size}]")
        require(self.num_epochs >= 1, "num_epochs", self.num_epochs, "an integer >= 1")
        require(self.entropy_coeff >= 0, "entropy_coeff", self.entropy_coeff, ">= 0")
        # The driver's runner has index 0, remote ones 1..N; a runner's sub-envs count up.
        last = self.seed + self.num_env_runners + self.num_envs_per_env_runner
        check_held_out(self.eval_seeds, range(self.seed, last))


# ---------------------------------------------------------------------- the adapter trainers
@dataclass(kw_only=True)
class AgentsConfig(LLMTrainerConfig):
    """Arguments of ``sandbox-rl train agents`` (one flag per field)."""

    tasks: tuple[str, ...] = field(("all",), "tasks to train: all, or task names")
    minutes: float = field(15.0, "wall-time budget per task, in minutes")
    seed: int = field(0, "seed of the adapters, the sampling and the world order")
    samples: int = field(4, "answers sampled per training state (besides the greedy one)")
    temperature: float = field(1.0, "sampling temperature of the proposals")
    draws: int = field(4, "re-seeded replays of the next step a proposal is scored over")
    states_per_round: int = field(24, "training states per expert-iteration round")
    heuristic_proposals: bool = field(True, "add the task heuristic's action as a proposal")
    enumerate_proposals: bool = field(True, "propose every answer, instead of samples, where the "
                                            "answer is one choice of a closed set "
                                            "(user_engagement's 31 campaigns; other tasks "
                                            "unchanged)")
    enumeration_draws: int = field(32, "re-seeded replays each proposal of an enumerated closed "
                                       "set is scored over")
    learning_rate: float = field(1e-3, "learning rate of the fine-tuning (AdamW)")
    batch_size: int = field(8, "fine-tuning batch size")
    ppo_share: float = field(0.2, "share of each task's time for TRL PPO after expert iteration")
    ppo_learning_rate: float = field(1e-5, "learning rate of the PPO phase")
    world_steps: int = field(8, "env steps per training and validation world")
    validation_seeds: tuple[int, ...] = field((900, 901, 902), "validation worlds (900-999): "
                                              "choose the round whose weights are kept")
    eval_seeds: tuple[int, ...] = field(tuple(range(1000, 1020)), "held-out worlds (the "
                                        "registered set is 1000-1019)")
    eval_steps: int = field(8, "env steps per held-out world")
    out: str = field("runs/agents", "run folder")
    resume: str | None = field(None, "continue the interrupted run in this folder: its finished "
                                     "tasks are kept, the others trained (it keeps its settings)")
    ray_address: str | None = field(None, "propose and score on Ray: the cluster at this address "
                                          "(auto, HOST:PORT) or 'local' (extra rllib)")
    workers: int | None = field(None, "Ray actors proposing and scoring, each with the model "
                                      "and --worker-threads CPUs; only with --ray-address "
                                      "(none: 2)")
    worker_threads: int | None = field(None, "torch threads of each Ray actor; only with "
                                             "--ray-address (none: --threads, which the "
                                             "learner in this process keeps)")

    def __post_init__(self) -> None:
        super().__post_init__()
        tasks = tuple(self.tasks)
        if tasks == ("all",):
            tasks = TASKS
        try:
            self.tasks = tuple(dict.fromkeys(TaskType.parse(t).value for t in tasks))
        except ValueError as err:
            require(False, "tasks", self.tasks, f"'all' or task names ({err})")
        require(self.minutes > 0, "minutes", self.minutes, "> 0")
        check_fields(self, {"samples": config_int(0), **dict.fromkeys(
            ("draws", "enumeration_draws", "states_per_round", "batch_size", "world_steps",
             "eval_steps"),
            config_int(1))}, normalise=False)
        require(0 <= self.ppo_share < 1, "ppo_share", self.ppo_share, "in [0, 1)")
        require(self.ray_address is None or bool(str(self.ray_address).strip()), "ray_address",
                self.ray_address, "auto, HOST:PORT, ray://HOST:PORT or local")
        for name in ("workers", "worker_threads"):
            value = getattr(self, name)
            require(value is None or (self.ray_address is not None and
                                      config_int(1).accepts(value)),
                    name, value, "an integer >= 1, with --ray-address")
        for name in ("temperature", "ppo_learning_rate"):
            require(getattr(self, name) > 0, name, getattr(self, name), "> 0")
        self.validation_seeds = tuple(self.validation_seeds)
        require(bool(self.validation_seeds) and all(
            FIRST_VALIDATION_SEED <= s < FIRST_HELD_OUT_SEED for s in self.validation_seeds),
            "validation_seeds", self.validation_seeds, "seeds in 900-999")


@dataclass(kw_only=True)
class LLMPPOConfig(LLMTrainerConfig):
    """Arguments of ``sandbox-rl train llm-ppo`` (one flag per field)."""

    tasks: tuple[str, ...] = field(TASKS, "tasks whose adapters are trained")
    updates: int = field(3, "PPO updates per task")
    prompts_per_update: int = field(8, "prompts per PPO update")
    samples_per_prompt: int = field(1, "completions sampled per prompt; > 1 centres each reward "
                                       "on its prompt's mean (group baseline, no critic)")
    rollout_temperature: float = field(0.0, "sampling temperature of the rollouts and of the "
                                            "sampled evaluation (0: the task's own, 0.7 for a "
                                            "greedy task)")
    ppo_epochs: int = field(1, "passes over each PPO batch")
    train_seeds: tuple[int, ...] = field((0, 1), "world seeds of the training episodes "
                                                 "(below 1000)")
    eval_seeds: tuple[int, ...] = field(HELD_OUT_SEEDS, "held-out worlds of the evaluation "
                                        "protocol (1000 or above; the registered set is "
                                        "1000-1019)")
    steps: int = field(8, "env steps per training and held-out world")
    users: int = field(1000, "simulated users")
    learning_rate: float = field(1e-4, "AdamW learning rate of the adapters")
    kl_coef: float = field(0.05, "KL penalty toward the base model")
    eval_samples: int = field(4, "answers per held-out step sampled as the rollouts are (the "
                                 "protocol's sampled arm, beside the greedy answer; 0: none)")
    seed: int = field(0, "seed of the learner, the prompt sampling and the evaluation's "
                         "sampling")
    checkpoint_every: int = field(10, "save the adapters every this many updates of a task")
    out: str = field("runs/llm_ppo", "run folder: adapters (PEFT format), checkpoints/, tb/, "
                                     "eval_trained.jsonl, eval_untrained.jsonl, results.json")
    resume: str | None = field(None, "continue the interrupted run in this folder: its finished "
                                     "tasks and PPO updates are kept, the rest trained (it keeps "
                                     "its settings)")

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            self.tasks = tuple(TaskType.parse(t).value for t in self.tasks)
        except ValueError as err:
            require(False, "tasks", self.tasks, str(err))
        check_fields(self, {
            **dict.fromkeys(("updates", "prompts_per_update", "samples_per_prompt", "ppo_epochs",
                             "steps", "checkpoint_every"), config_int(1)),
            "eval_samples": config_int(0)}, normalise=False)
        require(self.kl_coef >= 0, "kl_coef", self.kl_coef, ">= 0")
        require(0 <= self.rollout_temperature <= 5, "rollout_temperature",
                self.rollout_temperature, "in [0, 5]")
        self.train_seeds = tuple(self.train_seeds)
        require(bool(self.train_seeds) and all(0 <= s < FIRST_HELD_OUT_SEED
                                               for s in self.train_seeds),
                "train_seeds", self.train_seeds, "one or more seeds in 0-999 (1000 and above "
                                                 "are held out)")
