"""The resume point of ``sandbox-rl train llm-ppo`` and the check of ``--resume RUN``.

What a resume point holds is told in ``training/llm_ppo.py``; here are its file names, the task
in progress (:class:`InProgress`) and :func:`resume_config`, which checks a folder and gives the
config the run continues with. It loads no model (NumPy reads the saved tensors), so the
command line refuses a bad ``--resume`` as an argument error before anything heavy loads;
``llm_ppo`` imports it all back.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sandbox_rl.training.common import (check_next_task, finite_tensors, read_resume_point,
                                        require, resume_settings, task_in_progress)
from sandbox_rl.training.configs import TASKS, LLMPPOConfig

__all__ = ["FREE_ON_RESUME", "LEARNER", "MARKER", "RESUMABLE_RUN", "InProgress", "in_progress",
           "resume_config"]

MARKER = "results.json"  # a finished run
LEARNER = "learner.safetensors"  # in resume/: the PPO learner state of the task in progress
FREE_ON_RESUME = ("threads", "quiet")  # settings a resumed run may change
RESUMABLE_RUN = "the folder of an interrupted `sandbox-rl train llm-ppo` run"


@dataclass
class InProgress:
    """The task being trained when the resume point was saved: what its next update depends on
    besides its adapter (in the resume point's adapters) and its learner state (:data:`LEARNER`).

    ``updates``: the statistics of its finished updates (their count is the update to continue
    from); ``rng``: the state (``bit_generator.state``, JSON) of the Generator that draws its
    prompts, after them. Its training episodes are collected again from their seeds.
    """

    task: str
    updates: list[dict]
    rng: dict

    def __post_init__(self) -> None:
        require(isinstance(self.task, str) and self.task in TASKS, "task", self.task,
                "a task name")
        require(isinstance(self.updates, list) and bool(self.updates)
                and all(isinstance(u, dict) for u in self.updates), "updates",
                type(self.updates).__name__, "the statistics of one or more updates")
        self.generator()

    def generator(self) -> np.random.Generator:
        """A Generator in the saved state; ValueError naming ``rng`` when it is not a state of
        NumPy's default bit generator."""
        rng = np.random.default_rng()
        try:
            rng.bit_generator.state = self.rng
        except (KeyError, TypeError, ValueError) as err:
            require(False, "rng", str(self.rng)[:80], f"a {type(rng.bit_generator).__name__} "
                                                      f"state ({err})")
        return rng


def resume_config(cfg: LLMPPOConfig, given: set[str] | None = None) -> LLMPPOConfig:
    """The config ``cfg.resume`` continues with: the run's own, with the flags in ``given``
    that may change (:data:`FREE_ON_RESUME`). Checks, changing nothing, that the folder holds an
    interrupted llm-ppo run and that no other given setting differs; ValueError naming the
    field otherwise."""
    run = Path(cfg.resume)
    what = RESUMABLE_RUN
    require(run.exists() or run.is_symlink(), "resume", cfg.resume, f"{what} (no such folder)")
    require(run.is_dir() and not run.is_symlink(), "resume", cfg.resume, f"{what} (not a folder)")
    require(not (run / MARKER).exists(), "resume", cfg.resume,
            f"{what} (it finished: {MARKER} is there)")
    point = read_resume_point(run)
    require(point is not None, "resume", cfg.resume, f"{what} (no resume/ point: it is saved "
                                                     "after each PPO update)")
    try:
        config = LLMPPOConfig(**{**point[1]["config"], "resume": None})
        tasks = point[1]["tasks"]
        if not isinstance(tasks, dict) or list(tasks) != list(config.tasks[:len(tasks)]):
            raise ValueError("its finished tasks are not the first of its tasks")
        if not all(isinstance(t, dict) and isinstance(t.get("updates"), list)
                   for t in tasks.values()):
            raise ValueError("a finished task without its update statistics")
    except (KeyError, TypeError, ValueError) as err:
        require(False, "resume", cfg.resume, f"{what} (its saved settings do not load: "
                                             f"{str(err)[:200]})")
    in_progress(cfg.resume, point[0], point[1], config)
    return resume_settings(cfg, config, run, given, FREE_ON_RESUME)


def in_progress(run: str, folder: Path, state: dict, config: LLMPPOConfig) -> InProgress | None:
    """The task in progress of the resume point in ``folder`` (``task_in_progress``), checked
    against the run's ``config`` and the files beside it."""
    def check(saved: dict) -> InProgress:
        current = InProgress(**saved)
        check_next_task(folder, state, config.tasks, current.task)
        if len(current.updates) >= config.updates:
            raise ValueError(f"{len(current.updates)} updates of {current.task} done, but a "
                             f"task has {config.updates}")
        count = finite_tensors(folder / LEARNER).get("updates")
        if count is None or count.shape != () or count.dtype != np.int64:
            raise ValueError(f"{LEARNER} lacks its update count")
        if int(count) != len(current.updates):
            raise ValueError(f"{LEARNER} counts {int(count)} updates, the state "
                             f"{len(current.updates)}")
        return current

    return task_in_progress(run, RESUMABLE_RUN, state, check)
