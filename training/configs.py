"""The base configs of the ``sandbox-rl train`` entry points: the fields and checks they share.

A trainer's config is a dataclass whose fields are its command-line flags (``--eval-seeds`` for
``eval_seeds``; ``training/common.py`` builds the flags). Its fields come in three layers:

- :class:`RunConfig`: what every run has (seed, users per world, learning rate, held-out worlds,
  threads, run folder);
- :class:`EnvPPOConfig` (``train sb3``, ``train supersuit``, ``train rllib``): PPO on the env's
  vector observations for a number of env steps;
- :class:`LLMTrainerConfig` (``train agents``, ``train llm-ppo``): the task LoRA adapters of a
  base model, and resuming an interrupted run.

A trainer re-declares a base field only to give it its own default and help (a re-declared
field keeps its place; fields without a default here have none that suits every trainer).
Each rule is checked once, in the ``__post_init__`` of the class that declares the field; a
trainer's ``__post_init__`` calls ``super().__post_init__()`` before its own checks. The fields
are keyword-only: a positional argument is refused rather than bound to a field it was not
meant for. Nothing here imports an optional dependency.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from sandbox_rl.training.common import config_int, field, require
from sandbox_rl.validation import check_fields

__all__ = ["FIRST_HELD_OUT_SEED", "EnvPPOConfig", "LLMTrainerConfig", "RunConfig"]

FIRST_HELD_OUT_SEED = 1000  # worlds 1000+ are never trained on (training/protocol.py)


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
