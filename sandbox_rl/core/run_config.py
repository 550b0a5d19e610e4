"""The settings of ``sandbox-rl evolve`` (:class:`EvolveRunConfig`, one flag per field) and the
check of ``--resume RUN`` (:func:`resume_config`).

They live apart from the run (``core/run.py``, which imports them back) because the command line
reads the flags and checks a ``--resume`` folder before anything heavy loads: nothing here
imports torch or the sandbox, so ``--help`` and argument errors answer at once.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Iterable

from sandbox_rl.enums import EvolutionStrategy
from sandbox_rl.run_folders import EVOLVE, evolve_checkpoints, marker_config, why_not_run_folder
from sandbox_rl.training.common import config_int, field, resume_settings
from sandbox_rl.validation import OneOf, check_fields, require

__all__ = ["FREE_ON_RESUME", "EvolveRunConfig", "resume_config"]

# What a resumed run may change; it keeps the settings that decide its trajectory.
FREE_ON_RESUME = ("steps", "checkpoint_every", "quiet")


@dataclass
class EvolveRunConfig:
    """Arguments of ``sandbox-rl evolve`` (one flag per field)."""

    steps: int = field(20, "env steps to simulate (with --resume: the run's total, default "
                           "the run's own)")
    strategy: str = field("multi_model", "evolution strategy")
    model: str = field("embedded", "model of all five task agents")
    users: int = field(1000, "simulated users")
    pool_size: int = field(3, "members (adapters) per task")
    evolution_interval: int = field(5, "env steps between evolution steps")
    online_adaptation: bool = field(True, "small reward-weighted adapter updates between them")
    seed: int = field(0, "world and model seed")
    adapters: str | None = field(None, "start every task from the adapters a `sandbox-rl train "
                                       "agents` run saved (its run folder)")
    out: str = field("runs/latest", "run folder")
    overwrite: bool = field(False, "replace the run folder of an earlier evolve run")
    checkpoint_every: int = field(0, "save a checkpoint every N steps in <out>/checkpoints/ "
                                     "(the last 3 are kept; 0: only on Ctrl-C and at the end)")
    resume: str | None = field(None, "continue the evolve run in this folder from its newest "
                                     "checkpoint, as if never stopped (it keeps its settings)")
    quiet: bool = field(False, "no progress bar or summary")

    def __post_init__(self) -> None:
        strategies = tuple(s.value for s in EvolutionStrategy)
        check_fields(self, {**dict.fromkeys(("steps", "users", "pool_size", "evolution_interval"),
                                            config_int(1)),
                            "strategy": OneOf(strategies, "one of " + ", ".join(strategies)),
                            "seed": config_int(0)}, normalise=False)
        require(bool(str(self.out).strip()), "out", self.out, "a folder path")
        config_int(0).check("checkpoint_every", self.checkpoint_every)
        require(self.resume is None or bool(str(self.resume).strip()), "resume", self.resume,
                "a run folder")


def resume_config(args: EvolveRunConfig, given: Iterable[str] | None = None) -> EvolveRunConfig:
    """The settings ``args.resume`` continues with: the run's own (from its marker) for every
    field not in ``given`` (the flags the user typed; default: the fields that differ from their
    defaults). Checks, changing nothing, that the folder is an evolve run with a checkpoint and
    that no given setting differs from the run's; ValueError naming the field otherwise."""
    run = Path(args.resume)
    require(run.exists() or run.is_symlink(), "resume", args.resume,
            "the run folder of a `sandbox-rl evolve` run (no such folder)")
    reason = why_not_run_folder(run, EVOLVE, whole=False)
    require(reason is None, "resume", args.resume, f"the run folder of a `sandbox-rl evolve` run "
                                                   f"({reason})")
    saved = marker_config(run)
    try:
        known = {f.name for f in fields(EvolveRunConfig)}
        saved = EvolveRunConfig(**{k: v for k, v in saved.items() if k in known})
    except (AttributeError, TypeError, ValueError):
        saved = None
    require(saved is not None, "resume", args.resume,
            "a run folder whose marker holds the run's settings (written by evolve runs "
            "that can be resumed)")
    points = evolve_checkpoints(run)
    require(bool(points), "resume", args.resume,
            "a run folder with a checkpoint (none in checkpoints/ or state/; a run saves one "
            "on Ctrl-C, every --checkpoint-every N steps and at the end)")
    config = resume_settings(args, saved, run, None if given is None else set(given),
                             FREE_ON_RESUME)
    latest = points[0][0]
    require(config.steps >= latest, "steps", config.steps, f"an integer >= {latest}, the step of "
            "the run's newest checkpoint (--steps is the run's total)")
    return config
