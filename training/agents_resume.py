"""The resume point of ``sandbox-rl train agents`` and the check of ``--resume RUN``.

What a resume point holds is told in ``training/agents_trainer.py``; here are its file names, the
task in progress (:class:`InProgress`) and :func:`resume_config`, which checks a folder and
gives the config the run continues with. It loads no model (NumPy reads the saved tensors), so
the command line refuses a bad ``--resume`` as an argument error before anything heavy loads;
``agents_trainer`` imports it all back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from sandbox_rl.run_folders import read_json
from sandbox_rl.training.common import (EVALUATIONS, check_next_task, finite_tensors,
                                        read_resume_point, require, resume_settings,
                                        task_in_progress)
from sandbox_rl.training.configs import TASKS, AgentsConfig
from sandbox_rl.validation import Int, Real, check_fields

__all__ = ["BEST", "EXAMPLES", "FREE_ON_RESUME", "MARKER", "PHASES", "RESUMABLE_RUN",
           "RUNS_WHERE", "InProgress", "in_progress", "resume_config", "saved_examples"]

MARKER = "training.json"
# In resume/ while a task is in progress: its best weights so far and its examples so far.
BEST = "best.safetensors"
EXAMPLES = "examples.json"
PHASES = ("rounds", "ppo")  # what a task in progress does next
# Settings a resumed run may change (the others decide what it trains).
FREE_ON_RESUME = ("minutes", "threads", "quiet", "ray_address", "workers", "worker_threads")
RUNS_WHERE = ("ray_address", "workers", "worker_threads")  # the command's, never the saved run's
RESUMABLE_RUN = "the folder of an interrupted `sandbox-rl train agents` run"


@dataclass
class InProgress:
    """The task being trained when the resume point was saved: what its next round depends on
    besides its adapter's current weights (in the resume point's adapters), its best weights so
    far (:data:`BEST`) and its examples so far (:data:`EXAMPLES`).

    ``phase``: ``"rounds"`` (its next round is round ``done``) or ``"ppo"`` (its rounds are
    over, its adapter holds the kept weights and the PPO phase is next); ``rounds``: the log rows
    of its ``done`` finished rounds; ``start_reward``, ``best_reward``: the validation rewards of
    its start and of the best weights; ``worlds``: the training worlds'
    :meth:`TrainingWorlds.position`; ``seconds``: the wall time it used.
    """

    task: str
    phase: str
    done: int
    rounds: list[dict]
    start_reward: float
    best_reward: float
    worlds: dict[str, int]
    seconds: float

    def __post_init__(self) -> None:
        require(isinstance(self.task, str) and self.task in TASKS, "task", self.task,
                "a task name")
        require(self.phase in PHASES, "phase", self.phase, f"one of {PHASES}")
        check_fields(self, {"done": Int(0, numpy=False), "seconds": Real(0.0, numpy=False)})
        require(isinstance(self.rounds, list) and all(isinstance(r, dict) for r in self.rounds),
                "rounds", type(self.rounds).__name__, "the log rows of its rounds")
        for name in ("start_reward", "best_reward"):  # NaN kept: a run saves what it measured
            value = getattr(self, name)
            require(isinstance(value, (int, float)) and not isinstance(value, bool), name,
                    value, "a number")
        worlds = self.worlds
        require(isinstance(worlds, dict) and set(worlds) == {"collected", "taken"}
                and all(Int(0, numpy=False).accepts(v) for v in worlds.values()), "worlds",
                worlds, "the worlds collected and the states taken (integers >= 0)")


def resume_config(cfg: AgentsConfig, given: set[str] | None = None) -> AgentsConfig:
    """The config ``cfg.resume`` continues with: the run's own, with the flags in ``given``
    that may change (:data:`FREE_ON_RESUME`). Checks, changing nothing, that the folder holds an
    interrupted run of ``train agents`` (its task in progress too) and that no other given
    setting differs; ValueError naming the field otherwise."""
    run = Path(cfg.resume)
    what = RESUMABLE_RUN
    require(run.exists() or run.is_symlink(), "resume", cfg.resume, f"{what} (no such folder)")
    require(run.is_dir() and not run.is_symlink(), "resume", cfg.resume, f"{what} (not a folder)")
    point = None
    if (run / MARKER).exists():  # trained; resumed only if the evaluation did not finish
        require(not all((run / name).is_file() for name in EVALUATIONS), "resume", cfg.resume,
                f"{what} (it finished: {MARKER} and the evaluation are there)")
        saved = read_json(run / MARKER)
    else:
        point = read_resume_point(run)
        require(point is not None, "resume", cfg.resume, f"{what} (no resume/ point: it is "
                "saved after each expert-iteration round)")
        saved = point[1]
    try:
        # Runs saved before the enumeration existed proposed samples on every task.
        config = AgentsConfig(**{"enumerate_proposals": False, **saved["config"],
                                 "resume": None})
        tasks = saved["tasks"]
        if not isinstance(tasks, dict) or list(tasks) != list(config.tasks[:len(tasks)]):
            raise ValueError("its finished tasks are not the first of its tasks")
    except (KeyError, TypeError, ValueError) as err:
        require(False, "resume", cfg.resume, f"{what} (its saved settings do not load: "
                                             f"{str(err)[:200]})")
    if point is not None:
        in_progress(cfg.resume, point[0], point[1], config)
    resumed = resume_settings(cfg, config, run, given, FREE_ON_RESUME)
    # Where it runs is the command's, never the saved run's (its cluster may be gone).
    return replace(resumed, **{name: getattr(cfg, name) for name in RUNS_WHERE})


def in_progress(run: str, folder: Path, state: dict, config: AgentsConfig) -> InProgress | None:
    """The task in progress of the resume point in ``folder`` (``task_in_progress``), checked
    against the run's ``config`` and the files beside it."""
    def check(saved: dict) -> InProgress:
        current = InProgress(**saved)
        check_next_task(folder, state, config.tasks, current.task)
        if current.done != len(current.rounds):
            raise ValueError(f"its round index {current.done} is not the count of its round "
                             f"log rows ({len(current.rounds)})")
        if current.phase == "rounds" and not current.done:
            raise ValueError("its rounds are in progress but none finished")
        taken = current.done * config.states_per_round
        if current.worlds["taken"] != taken:
            raise ValueError(f"{current.worlds['taken']} training states taken, but "
                             f"{current.done} rounds of {config.states_per_round} take {taken}")
        counted = sum(row["examples"] for row in current.rounds)
        examples = saved_examples(folder / EXAMPLES)
        if len(examples) != counted:
            raise ValueError(f"{EXAMPLES} holds {len(examples)} examples, its round log "
                             f"{counted}")
        best = finite_tensors(folder / BEST)
        if not best or any(v.dtype.kind != "f" for v in best.values()):
            raise ValueError(f"{BEST} holds no weights or weights that are not floats")
        return current

    return task_in_progress(run, RESUMABLE_RUN, state, check)


# An example as EXAMPLES holds it (``expert_iteration.Example``'s fields).
_EXAMPLE_FIELDS = {"prompt": str, "completion": str, "reward": (int, float),
                   "greedy_reward": (int, float), "source": str}


def saved_examples(path: Path) -> list[dict]:
    """The examples in ``path`` (JSON: a list of :data:`_EXAMPLE_FIELDS` objects); ValueError
    when the file is missing, does not parse or holds something else."""
    if not path.is_file():
        raise ValueError(f"{path.name} is missing")
    try:
        examples = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path.name} does not load ({str(err)[:100]})") from None
    if not isinstance(examples, list) or not all(
            isinstance(e, dict) and set(e) == set(_EXAMPLE_FIELDS)
            and all(isinstance(e[k], t) for k, t in _EXAMPLE_FIELDS.items()) for e in examples):
        raise ValueError(f"{path.name} is not a list of examples "
                         f"({', '.join(_EXAMPLE_FIELDS)})")
    return examples
