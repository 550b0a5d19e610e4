"""LLM PPO: train the task LoRA adapters with TRL PPO on the env's rewards (``sandbox-rl train
llm-ppo``).

For each task: training episodes (seeds ``train_seeds``, below 1000) give the prompts and the
snapshots their completions are scored against (``training/task_episodes.py``); ``updates`` PPO
updates (``training/ppo.py``, ``trl.experimental.ppo``) train the task's adapter. The trained
adapters and the untrained ones (the base model: PEFT's fresh adapter computes it) are then
measured by the evaluation protocol (``training/protocol.py``) on the held-out worlds
``eval_seeds`` (default the registered 1000-1019), as ``train agents`` measures its own: greedy
answers, ``eval_samples`` answers per step sampled as the rollouts are (the ``sampled`` arm),
the task's heuristic and random actions on the same steps. The run folder holds the adapters in
PEFT's format (``adapters/``, and ``checkpoints/`` every ``checkpoint_every`` updates),
TensorBoard scalars of every update (``tb/``), the protocol's JSON lines
(``eval_trained.jsonl``, ``eval_untrained.jsonl``) and ``results.json`` (the config and every
update's statistics; written last, it marks a finished run). As for the other trainers, a
folder holding a finished run is refused unless ``--overwrite``, which first removes that run's
outputs (only those), so TensorBoard files of two runs never mix.

Interrupting and resuming: after each trained task, ``resume/`` is replaced atomically by the
adapters and the training statistics so far; Ctrl-C stops the run (the task in progress is
lost) with a message saying how to continue, and ``--resume RUN`` keeps the run's settings
(``--threads`` and ``--quiet`` may change), loads the finished tasks' adapters, trains the others
and evaluates; a run interrupted during the evaluation only evaluates. Every task starts from
its own seeds, so the resumed run's numbers are those of the run never stopped.
"""

from __future__ import annotations

import json
import shlex
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sandbox_rl.enums import TaskType
from sandbox_rl.run_folders import (LLM_PPO, RunInterrupted, recover_folder, remove_outputs,
                                    why_not_run_folder)
from sandbox_rl.training.common import (EVALUATIONS, RESUME_DIR, config_int,
                                        evaluate_trained_and_untrained, field, prepare_out_dir,
                                        print_evaluations, read_resume_point, require,
                                        resume_settings, save_resume_point)
from sandbox_rl.validation import check_fields

ALL_TASKS = tuple(t.value for t in TaskType)
FIRST_HELD_OUT_SEED = 1000  # worlds 1000+ are never trained on (training/protocol.py)
HELD_OUT_SEEDS = tuple(range(1000, 1020))  # the registered held-out set
MARKER = "results.json"  # a finished run
FREE_ON_RESUME = ("threads", "quiet")  # settings a resumed run may change


@dataclass
class LLMPPOConfig:
    """Arguments of ``sandbox-rl train llm-ppo`` (one flag per field)."""

    model: str = field("embedded", "base model of the task adapters")
    tasks: tuple[str, ...] = field(ALL_TASKS, "tasks whose adapters are trained")
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
    lora_rank: int = field(8, "LoRA rank of the adapters")
    eval_samples: int = field(4, "answers per held-out step sampled as the rollouts are (the "
                                 "protocol's sampled arm, beside the greedy answer; 0: none)")
    seed: int = field(0, "seed of the learner, the prompt sampling and the evaluation's "
                         "sampling")
    threads: int = field(2, "torch CPU threads")
    checkpoint_every: int = field(10, "save the adapters every this many updates of a task")
    out: str = field("runs/llm_ppo", "run folder: adapters (PEFT format), checkpoints/, tb/, "
                                     "eval_trained.jsonl, eval_untrained.jsonl, results.json")
    overwrite: bool = field(False, "replace a finished run in --out")
    resume: str | None = field(None, "continue the interrupted run in this folder: its finished "
                                     "tasks are kept, the others trained (it keeps its settings)")
    quiet: bool = field(False, "hide the progress bar")

    def __post_init__(self) -> None:
        require(self.resume is None or bool(str(self.resume).strip()), "resume", self.resume,
                "a run folder")
        try:
            self.tasks = tuple(TaskType.parse(t).value for t in self.tasks)
        except ValueError as err:
            require(False, "tasks", self.tasks, str(err))
        check_fields(self, {
            **dict.fromkeys(("updates", "prompts_per_update", "samples_per_prompt", "ppo_epochs",
                             "steps", "lora_rank", "threads", "checkpoint_every"), config_int(1)),
            **dict.fromkeys(("eval_samples", "seed"), config_int(0)),
            "users": config_int(50)}, normalise=False)
        require(self.learning_rate > 0, "learning_rate", self.learning_rate, "> 0")
        require(self.kl_coef >= 0, "kl_coef", self.kl_coef, ">= 0")
        require(0 <= self.rollout_temperature <= 5, "rollout_temperature",
                self.rollout_temperature, "in [0, 5]")
        self.train_seeds, self.eval_seeds = tuple(self.train_seeds), tuple(self.eval_seeds)
        require(bool(self.train_seeds) and all(0 <= s < FIRST_HELD_OUT_SEED
                                               for s in self.train_seeds),
                "train_seeds", self.train_seeds, "one or more seeds in 0-999 (1000 and above "
                                                 "are held out)")
        require(bool(self.eval_seeds) and all(s >= FIRST_HELD_OUT_SEED for s in self.eval_seeds)
                and len(set(self.eval_seeds)) == len(self.eval_seeds), "eval_seeds",
                self.eval_seeds, "distinct seeds >= 1000 (held out from training)")


@dataclass
class LLMPPORun:
    """A finished run: its config, each task's PPO update statistics (in task order) and the
    evaluation protocol's reports of the trained and the untrained adapters."""

    config: LLMPPOConfig
    updates: dict[str, list[dict]]
    reports: dict[str, Any]  # "trained", "untrained": ProtocolReport

    def saved(self) -> dict:
        """``results.json``: the config, the training statistics and where the figures are."""
        return {**_state(self.config, self.updates),
                "held_out": {"protocol": "training/protocol.py (sandbox-rl evaluate)",
                             "trained": EVALUATIONS[0], "untrained": EVALUATIONS[1]}}


def _state(cfg: LLMPPOConfig, updates: dict[str, list[dict]]) -> dict:
    """The resume point's state: the config and the trained tasks' update statistics."""
    return {"config": asdict(cfg), "tasks": {t: {"updates": u} for t, u in updates.items()}}


def train_llm_ppo(cfg: LLMPPOConfig, given: set[str] | None = None) -> LLMPPORun:
    """Train every task (or with ``cfg.resume``, the unfinished ones; ``given``: see
    :func:`resume_config`), then evaluate. Ctrl-C: :class:`RunInterrupted` saying what was
    kept."""
    # Heavy (torch, peft, rich): on use, so importing this module (the CLI) stays light.
    import torch
    from rich.console import Console

    from sandbox_rl.agents.lora import LoraSettings, TaskAdapters
    from sandbox_rl.agents.models import load_model

    if cfg.resume is not None:
        cfg = resume_config(cfg, given)
        out = Path(cfg.out)
    else:
        out = _prepare_out(cfg)
    torch.set_num_threads(cfg.threads)
    console = Console(stderr=True, quiet=cfg.quiet)
    adapters = TaskAdapters(load_model(cfg.model), list(cfg.tasks), LoraSettings(rank=cfg.lora_rank),
                            cfg.seed)
    updates = _resumed(adapters, out) if cfg.resume is not None else {}
    try:
        _train_tasks(adapters, cfg, out, updates, console)
    except KeyboardInterrupt:
        raise RunInterrupted(_interrupted(cfg, out, updates)) from None
    adapters.save(out / "adapters")
    try:
        reports = _evaluate(adapters, cfg, out)
    except KeyboardInterrupt:
        raise RunInterrupted(f"interrupted during the evaluation (the {len(cfg.tasks)} tasks are "
                             f"trained); {_resume_hint(out)}") from None
    run = LLMPPORun(cfg, updates, reports)
    (out / MARKER).write_text(json.dumps(run.saved(), indent=1))
    shutil.rmtree(out / RESUME_DIR, ignore_errors=True)  # results.json holds it all now
    return run


def _train_tasks(adapters, cfg: LLMPPOConfig, out: Path, updates: dict, console) -> None:
    """PPO on every task not in ``updates`` (each added there, and to the resume point, when
    it is finished)."""
    # Heavy (torch, TensorBoard, TRL, rich): on use, so importing this module (the CLI) stays
    # light.
    from rich.progress import Progress
    from torch.utils.tensorboard import SummaryWriter

    from sandbox_rl.agents.task_specs import spec
    from sandbox_rl.training.ppo import PPOLearner
    from sandbox_rl.training.task_episodes import collect_episode, with_temperature

    writer = SummaryWriter(str(out / "tb"))
    try:
        with Progress(console=console) as progress:
            bar = progress.add_task("llm-ppo", total=len(cfg.tasks) * cfg.updates,
                                    completed=len(updates) * cfg.updates)
            for task in cfg.tasks[len(updates):]:
                s = with_temperature(spec(task), cfg.rollout_temperature)
                learner = PPOLearner(adapters, ppo_settings(
                    cfg.prompts_per_update, cfg.samples_per_prompt, cfg.ppo_epochs,
                    cfg.learning_rate, cfg.seed, cfg.kl_coef))
                train = [collect_episode(task, seed, cfg.steps, cfg.users)
                         for seed in cfg.train_seeds]
                rng, stats = np.random.default_rng(cfg.seed), []
                for update in range(cfg.updates):
                    stats.append(asdict(episode_update(learner, task, train,
                                                       cfg.prompts_per_update, rng, s)))
                    for key, value in stats[-1].items():
                        writer.add_scalar(f"{task}/{key}", value, update + 1)
                    if (update + 1) % cfg.checkpoint_every == 0:
                        adapters.save(out / "checkpoints" / f"{task}_update{update + 1}")
                    progress.update(bar, advance=1, description=f"{task} update {update + 1}: "
                                    f"reward {stats[-1]['mean_reward']:.3f}")
                updates[task] = stats
                save_resume_point(out, adapters, _state(cfg, updates))
    finally:
        writer.close()


def _evaluate(adapters, cfg: LLMPPOConfig, out: Path) -> dict:
    """The evaluation protocol on the held-out worlds for the trained and untrained adapters,
    the sampled arm decoded as the rollouts were."""
    # Heavy (torch, peft, TRL): on use, so importing this module (the CLI) stays light.
    from sandbox_rl.training.protocol import ProtocolConfig

    config = ProtocolConfig(tasks=cfg.tasks, seeds=cfg.eval_seeds, steps=cfg.steps,
                            users=cfg.users, sampled=cfg.eval_samples, seed=cfg.seed)
    return evaluate_trained_and_untrained(adapters, config, out, cfg.model,
                                          cfg.rollout_temperature)


def _resume_hint(out: Path) -> str:
    return f"continue with: sandbox-rl train llm-ppo --resume {shlex.quote(str(out))}"


def _interrupted(cfg: LLMPPOConfig, out: Path, updates: dict) -> str:
    if not updates:
        return ("interrupted before the first task finished; nothing to resume (run the "
                "command again)")
    return (f"interrupted: {len(updates)} of {len(cfg.tasks)} tasks finished "
            f"({', '.join(updates)}), saved in {out / RESUME_DIR}; {_resume_hint(out)}")


def resume_config(cfg: LLMPPOConfig, given: set[str] | None = None) -> LLMPPOConfig:
    """The config ``cfg.resume`` continues with: the run's own, with the flags in ``given``
    that may change (:data:`FREE_ON_RESUME`). Checks, changing nothing, that the folder holds an
    interrupted llm-ppo run and that no other given setting differs; ValueError naming the
    field otherwise."""
    run = Path(cfg.resume)
    what = "the folder of an interrupted `sandbox-rl train llm-ppo` run"
    require(run.exists() or run.is_symlink(), "resume", cfg.resume, f"{what} (no such folder)")
    require(run.is_dir() and not run.is_symlink(), "resume", cfg.resume, f"{what} (not a folder)")
    require(not (run / MARKER).exists(), "resume", cfg.resume,
            f"{what} (it finished: {MARKER} is there)")
    point = read_resume_point(run)
    require(point is not None, "resume", cfg.resume, f"{what} (no resume/ point: it is saved "
                                                     "when a task finishes)")
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
    return resume_settings(cfg, config, run, given, FREE_ON_RESUME)


def _resumed(adapters, out: Path) -> dict[str, list[dict]]:
    """The update statistics of the finished tasks, their adapters loaded into ``adapters``."""
    recover_folder(out / RESUME_DIR)
    folder, state = read_resume_point(out)
    updates = {task: t["updates"] for task, t in state["tasks"].items()}
    if updates:
        adapters.load(folder / "adapters", names=list(updates))
    return updates


def _prepare_out(cfg: LLMPPOConfig) -> Path:
    """The other trainers' rule (``prepare_out_dir``); with ``overwrite``, an earlier llm-ppo
    run's outputs are removed first (nothing else in the folder); FileExistsError, with nothing
    removed, when those outputs hold files no run writes."""
    out = prepare_out_dir(cfg.out, cfg.overwrite, MARKER)
    # An llm-ppo run by its marker (or results) alone; remove_outputs checks what lies inside.
    if cfg.overwrite and why_not_run_folder(out, LLM_PPO, whole=False, names=()) is None:
        remove_outputs(out, LLM_PPO)
    return out


def episode_update(learner, adapter: str, episodes, prompts: int, rng: np.random.Generator,
                   task_spec=None):
    """One PPO update of ``adapter`` on ``prompts`` steps drawn by ``rng`` from ``episodes`` (of
    one task), each rollout scored by the env in a counterfactual step of its snapshot; decoded
    within the task's token budget, as :func:`as_trained` says for ``task_spec`` (default the
    task's spec)."""
    # Heavy (torch, peft, TRL): on use, so importing this module (the CLI) stays light.
    from sandbox_rl.agents.task_specs import spec
    from sandbox_rl.training.task_episodes import cut_at_stop, rollout_settings

    s = task_spec or spec(episodes[0].task)
    learner.settings = rollout_settings(learner.settings, s)
    pool = [(e, i) for e in episodes for i in range(len(e.steps))]
    picks = [pool[j] for j in rng.choice(len(pool), prompts, replace=len(pool) < prompts)]
    texts = [s.prompt(learner.adapters.tokenizer, e.steps[i].observation) for e, i in picks]

    def reward_fn(indices, completions):
        # TRL's rollouts stop only at the end-of-sequence token: score exactly the text that
        # generation (evaluation, the live sandbox) keeps, cut at the task's stop strings.
        return [picks[k][0].score(picks[k][1], s.answer(picks[k][0].steps[picks[k][1]].observation,
                                                        cut_at_stop(text, s.sampling.stop)))
                for k, text in zip(indices, completions)]

    return learner.update(adapter, texts, reward_fn)


def ppo_settings(prompts: int, samples_per_prompt: int, ppo_epochs: int, learning_rate: float,
                 seed: int, kl_coef: float = 0.05):
    """PPO settings for updates of ``prompts`` prompts sampled ``samples_per_prompt`` times each
    (one PPO batch, mini-batches of up to 4 rollouts)."""
    from sandbox_rl.training.ppo import PPOSettings  # torch: on use, this module stays light

    rollouts = prompts * samples_per_prompt
    return PPOSettings(learning_rate=learning_rate, kl_coef=kl_coef, seed=seed,
                       rollouts_per_update=rollouts, mini_batch_size=min(4, rollouts),
                       samples_per_prompt=samples_per_prompt, ppo_epochs=ppo_epochs)


def train(cfg: LLMPPOConfig, given: set[str] | None = None) -> LLMPPORun:
    """The ``train llm-ppo`` entry point."""
    if cfg.resume is not None:
        cfg = resume_config(cfg, given)
    return train_llm_ppo(cfg)


def report(run: LLMPPORun, console) -> None:
    """The evaluation protocol's tables: the trained adapters' arms and trained - untrained."""
    out = run.config.out
    print_evaluations(run.reports, console)
    console.print(f"adapters (PEFT format) in {out}/adapters (checkpoints/, TensorBoard tb/); "
                  f"held-out lines in {out}/eval_trained.jsonl and eval_untrained.jsonl; "
                  f"config and update statistics in {out}/results.json")
