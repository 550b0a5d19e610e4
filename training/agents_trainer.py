"""``sandbox-rl train agents``: make the task agents better, then measure them on held-out worlds.

Per task, within ``minutes`` of wall time: expert-iteration rounds with the world as the
verifier (``training/expert_iteration.py``) on states of training worlds (seeds 0-899), then
TRL PPO from the fine-tuned adapter for the last ``ppo_share`` of the time (kept only if it
raises the validation reward, worlds 900-999). The run folder holds the adapters in PEFT's
format (``adapters/``, one sub-folder per task; ``sandbox-rl evolve --adapters RUN`` and
``create_self_evolving_oasis(adapters_dir=RUN)`` start from them), TensorBoard scalars of every
round (``tb/``), ``training.json`` and the held-out results of the evaluation protocol
(``training/protocol.py``) for the trained and the untrained adapters on the same worlds
(``eval_trained.jsonl``, ``eval_untrained.jsonl``).

Interrupting and resuming: after each finished task, ``resume/`` is replaced atomically by the
adapters and the training log so far; Ctrl-C stops the run (the task in progress is lost) with
a message saying how to continue, and ``--resume RUN`` keeps the run's settings (``--minutes``,
``--threads`` and ``--quiet`` may change), loads the finished tasks' adapters, trains the others
and evaluates; a run interrupted during the evaluation only evaluates.
"""

from __future__ import annotations

import json
import shlex
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from sandbox_rl.enums import TaskType
from sandbox_rl.run_folders import RunInterrupted, read_json, recover_folder
from sandbox_rl.seeding import derived_seed
from sandbox_rl.training.common import (EVALUATIONS, RESUME_DIR, config_int,
                                        evaluate_trained_and_untrained, field, prepare_out_dir,
                                        print_evaluations, read_resume_point, require,
                                        resume_settings, save_resume_point)
from sandbox_rl.training.configs import FIRST_HELD_OUT_SEED, LLMTrainerConfig
from sandbox_rl.training.llm_ppo import ppo_settings
from sandbox_rl.validation import check_fields

ALL_TASKS = tuple(t.value for t in TaskType)
FIRST_VALIDATION_SEED = 900
MARKER = "training.json"
# Settings a resumed run may change (the others decide what it trains).
FREE_ON_RESUME = ("minutes", "threads", "quiet")


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

    def __post_init__(self) -> None:
        super().__post_init__()
        tasks = tuple(self.tasks)
        if tasks == ("all",):
            tasks = ALL_TASKS
        try:
            self.tasks = tuple(dict.fromkeys(TaskType.parse(t).value for t in tasks))
        except ValueError as err:
            require(False, "tasks", self.tasks, f"'all' or task names ({err})")
        require(self.minutes > 0, "minutes", self.minutes, "> 0")
        check_fields(self, {"samples": config_int(0), **dict.fromkeys(
            ("draws", "states_per_round", "batch_size", "world_steps", "eval_steps"),
            config_int(1))}, normalise=False)
        require(0 <= self.ppo_share < 1, "ppo_share", self.ppo_share, "in [0, 1)")
        for name in ("temperature", "ppo_learning_rate"):
            require(getattr(self, name) > 0, name, getattr(self, name), "> 0")
        self.validation_seeds = tuple(self.validation_seeds)
        require(bool(self.validation_seeds) and all(
            FIRST_VALIDATION_SEED <= s < FIRST_HELD_OUT_SEED for s in self.validation_seeds),
            "validation_seeds", self.validation_seeds, "seeds in 900-999")


class TrainingWorlds:
    """States of training worlds 0-899 in an order drawn from ``seed``, ``world_steps`` states
    per world of ``users`` users; call with a count."""

    def __init__(self, task: str, seed: int, world_steps: int, users: int) -> None:
        self.task, self.world_steps, self.users = task, world_steps, users
        rng = np.random.default_rng(derived_seed(seed, task, "worlds"))
        self.order = rng.permutation(FIRST_VALIDATION_SEED).tolist()
        self.pending: list = []
        self.episodes: list = []  # every world collected so far (PPO draws from them)

    def __call__(self, count: int) -> list:
        # Heavy (torch, peft, TRL): on use, so importing this module (the CLI) stays light.
        from sandbox_rl.training.expert_iteration import states_of
        from sandbox_rl.training.task_episodes import collect_episode

        while len(self.pending) < count:
            seed = self.order[len(self.episodes) % len(self.order)]
            episode = collect_episode(self.task, seed, self.world_steps, self.users)
            self.episodes.append(episode)
            self.pending += states_of([episode])
        taken, self.pending = self.pending[:count], self.pending[count:]
        return taken


def resume_config(cfg: AgentsConfig, given: set[str] | None = None) -> AgentsConfig:
    """The config ``cfg.resume`` continues with: the run's own, with the flags in ``given``
    that may change (:data:`FREE_ON_RESUME`). Checks, changing nothing, that the folder holds an
    interrupted run of ``train agents`` and that no other given setting differs; ValueError
    naming the field otherwise."""
    run = Path(cfg.resume)
    what = "the folder of an interrupted `sandbox-rl train agents` run"
    require(run.exists() or run.is_symlink(), "resume", cfg.resume, f"{what} (no such folder)")
    require(run.is_dir() and not run.is_symlink(), "resume", cfg.resume, f"{what} (not a folder)")
    if (run / MARKER).exists():  # trained; resumed only if the evaluation did not finish
        require(not all((run / name).is_file() for name in EVALUATIONS), "resume", cfg.resume,
                f"{what} (it finished: {MARKER} and the evaluation are there)")
        saved = read_json(run / MARKER)
    else:
        point = read_resume_point(run)
        require(point is not None, "resume", cfg.resume, f"{what} (no resume/ point: it is "
                "saved when a task finishes)")
        saved = point[1]
    try:
        config = AgentsConfig(**{**saved["config"], "resume": None})
        tasks = saved["tasks"]
        if not isinstance(tasks, dict) or list(tasks) != list(config.tasks[:len(tasks)]):
            raise ValueError("its finished tasks are not the first of its tasks")
    except (KeyError, TypeError, ValueError) as err:
        require(False, "resume", cfg.resume, f"{what} (its saved settings do not load: "
                                             f"{str(err)[:200]})")
    return resume_settings(cfg, config, run, given, FREE_ON_RESUME)


def _resumed(adapters, out: Path) -> dict:
    """The training log of the finished tasks, their adapters loaded into ``adapters``."""
    if (out / MARKER).exists():
        log = read_json(out / MARKER)["tasks"]
        adapters.load(out / "adapters")
        return log
    recover_folder(out / RESUME_DIR)
    folder, state = read_resume_point(out)
    log = state["tasks"]
    if log:
        adapters.load(folder / "adapters", names=list(log))
    return log


def train_agents(cfg: AgentsConfig, given: set[str] | None = None) -> dict:
    """Train (or with ``cfg.resume``, continue; ``given``: see :func:`resume_config`) and
    evaluate. Ctrl-C: :class:`RunInterrupted` saying what was kept."""
    # Heavy (torch, peft, TensorBoard, rich): on use, so importing this module (the CLI)
    # stays light.
    import torch
    from rich.console import Console
    from rich.progress import Progress
    from torch.utils.tensorboard import SummaryWriter

    from sandbox_rl.agents.lora import LoraSettings, TaskAdapters
    from sandbox_rl.agents.models import load_model

    if cfg.resume is not None:
        cfg = resume_config(cfg, given)
        out = Path(cfg.out)
    else:
        out = prepare_out_dir(cfg.out, cfg.overwrite, MARKER)
    torch.set_num_threads(cfg.threads)
    console = Console(stderr=True, quiet=cfg.quiet)
    adapters = TaskAdapters(load_model(cfg.model), list(cfg.tasks),
                            LoraSettings(rank=cfg.lora_rank), cfg.seed)
    log: dict[str, dict] = _resumed(adapters, out) if cfg.resume is not None else {}
    if not (out / MARKER).exists():
        writer = SummaryWriter(str(out / "tb"))
        try:
            with Progress(console=console) as progress:
                bar = progress.add_task("train agents", total=len(cfg.tasks) * cfg.minutes * 60,
                                        completed=len(log) * cfg.minutes * 60)
                for task in cfg.tasks[len(log):]:
                    log[task] = _train_task(adapters, task, cfg, writer, progress, bar)
                    adapters.save(out / "adapters")
                    save_resume_point(out, adapters, {"config": asdict(cfg), "tasks": log})
        except KeyboardInterrupt:
            raise RunInterrupted(_interrupted(cfg, out, log)) from None
        finally:
            writer.close()
        (out / MARKER).write_text(json.dumps({"config": asdict(cfg), "tasks": log}, indent=1))
        shutil.rmtree(out / RESUME_DIR, ignore_errors=True)  # training.json holds it all now
    try:
        reports = _evaluate(adapters, cfg, out, console)
    except KeyboardInterrupt:
        raise RunInterrupted(f"interrupted during the evaluation (the {len(cfg.tasks)} tasks are "
                             f"trained); {_resume_hint(out)}") from None
    return {"config": cfg, "log": log, "reports": reports}


def _resume_hint(out: Path) -> str:
    return f"continue with: sandbox-rl train agents --resume {shlex.quote(str(out))}"


def _interrupted(cfg: AgentsConfig, out: Path, log: dict) -> str:
    if not log:
        return (f"interrupted before the first task finished; nothing to resume (run the "
                f"command again, with --overwrite if asked)")
    return (f"interrupted: {len(log)} of {len(cfg.tasks)} tasks finished ({', '.join(log)}), "
            f"saved in {out / 'resume'}; {_resume_hint(out)}")


def _train_task(adapters, task: str, cfg: AgentsConfig, writer, progress, bar) -> dict:
    # Heavy (torch, peft, TRL): on use, so importing this module (the CLI) stays light.
    from sandbox_rl.training.expert_iteration import RoundSettings, run_rounds
    from sandbox_rl.training.task_episodes import collect_episode

    start = time.perf_counter()
    budget = cfg.minutes * 60
    settings = RoundSettings(cfg.samples, cfg.temperature, cfg.draws, 0.0,
                             cfg.heuristic_proposals, cfg.learning_rate, cfg.batch_size, 1,
                             cfg.seed)
    validation = [collect_episode(task, s, cfg.world_steps, cfg.users)
                  for s in cfg.validation_seeds]
    worlds, rounds = TrainingWorlds(task, cfg.seed, cfg.world_steps, cfg.users), []

    def on_round(index, stats, reward) -> None:
        row = {**asdict(stats), "validation_reward": reward}
        rounds.append(row)
        for key in ("examples", "from_heuristic", "greedy_reward", "best_reward", "sft_loss",
                    "validation_reward"):
            writer.add_scalar(f"{task}/{key}", row[key], index + 1)
        progress.update(bar, completed=_done_before(cfg, task) + time.perf_counter() - start,
                        description=f"{task} round {index + 1}: validation {reward:.3f}, "
                                    f"{stats.examples} examples")

    first, kept = run_rounds(adapters, task, worlds, validation, settings,
                             start + budget * (1 - cfg.ppo_share), cfg.states_per_round,
                             on_round)
    ppo = _ppo_phase(adapters, task, cfg, worlds.episodes, validation, kept, start + budget)
    progress.update(bar, completed=_done_before(cfg, task) + budget)
    return {"validation_untrained": first, "validation_after_rounds": kept, "rounds": rounds,
            "ppo": ppo, "worlds": len(worlds.episodes),
            "seconds": time.perf_counter() - start}


def _done_before(cfg: AgentsConfig, task: str) -> float:
    return cfg.tasks.index(task) * cfg.minutes * 60


def _ppo_phase(adapters, task: str, cfg: AgentsConfig, episodes, validation, reward_before,
               deadline: float) -> dict:
    """TRL PPO updates until ``deadline``; rewards are expected rewards over re-seeded draws of
    exactly the text evaluation sees (cut at the task's stop strings). Kept only if the
    validation reward rises."""
    # Heavy (torch, peft, TRL): on use, so importing this module (the CLI) stays light.
    from sandbox_rl.agents.task_specs import spec
    from sandbox_rl.training.expert_iteration import validation_reward
    from sandbox_rl.training.ppo import PPOLearner
    from sandbox_rl.training.task_episodes import cut_at_stop, rollout_settings

    if cfg.ppo_share == 0 or not episodes or time.perf_counter() >= deadline:
        return {"updates": 0}
    s = spec(task)
    learner = PPOLearner(adapters, ppo_settings(4, 4, 2, cfg.ppo_learning_rate, cfg.seed, 0.01))
    learner.settings = rollout_settings(learner.settings, s)
    before, rng, stats = adapters.state(task), np.random.default_rng(cfg.seed), []
    pool = [(e, i) for e in episodes for i in range(len(e.steps))]
    # An update is not started when the last one would not fit in the time left.
    while time.perf_counter() + (stats[-1]["seconds"] if stats else 0.0) < deadline:
        picks = [pool[j] for j in rng.choice(len(pool), 4, replace=len(pool) < 4)]

        def reward_fn(indices, completions, picks=picks):
            return [picks[k][0].expected_scores(
                picks[k][1], [s.answer(picks[k][0].steps[picks[k][1]].observation,
                                       cut_at_stop(text, s.sampling.stop))], 2,
                derived_seed(cfg.seed, task, "ppo", len(stats), k))[0]
                for k, text in zip(indices, completions)]

        prompts = [s.prompt(adapters.tokenizer, e.steps[i].observation) for e, i in picks]
        stats.append(asdict(learner.update(task, prompts, reward_fn)))
    after = validation_reward(adapters, task, validation)
    kept = after > reward_before
    if not kept:
        adapters.load_state(task, before)
    return {"updates": len(stats), "validation_after": after, "kept": kept, "stats": stats}


def _evaluate(adapters, cfg: AgentsConfig, out: Path, console) -> dict:
    """The evaluation protocol on the held-out worlds for the trained and untrained adapters."""
    # Heavy (torch, peft, TRL): on use, so importing this module (the CLI) stays light.
    from sandbox_rl.training.protocol import ProtocolConfig

    config = ProtocolConfig(tasks=cfg.tasks, seeds=cfg.eval_seeds, steps=cfg.eval_steps,
                            users=cfg.users, seed=cfg.seed)
    return evaluate_trained_and_untrained(adapters, config, out, cfg.model)


def train(cfg: AgentsConfig, given: set[str] | None = None):
    """The ``train agents`` entry point."""
    return train_agents(cfg, given)


def report(result: dict, console) -> None:
    cfg = result["config"]
    print_evaluations(result["reports"], console)
    console.print(f"adapters (PEFT format) in {cfg.out}/adapters; TensorBoard in {cfg.out}/tb; "
                  f"held-out lines in {cfg.out}/eval_trained.jsonl and eval_untrained.jsonl")
