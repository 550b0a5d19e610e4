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

Interrupting and resuming: after each PPO update, ``resume/`` is replaced atomically by the
adapters and the training statistics so far; while a task is in progress also by what its next
update depends on: the learner's state of its adapter (AdamW slots, value head and the update
count that seeds its rollouts; ``learner.safetensors``) and the state of the Generator drawing
its prompts (:class:`InProgress`). Ctrl-C stops the run with a message saying how many tasks and
updates were kept and how to continue; ``--resume RUN`` keeps the run's settings (``--threads``
and ``--quiet`` may change), loads the finished tasks' adapters, continues the task in progress
from its next update, trains the others and evaluates; a run interrupted during the evaluation
only evaluates. Every task starts from its own seeds and its training episodes are collected
again from them, so the resumed run's numbers are those of the run never stopped. Saving after
every update costs little beside the update (measured on 2 CPU threads): the embedded model's
resume point (five rank-8 adapters and the learner state, 13 MB) takes 0.2-0.35 s against
~170 s for a 4-prompt update; the tiny test model's ~0.07 s against ~0.85 s.
"""

from __future__ import annotations

import json
import shlex
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import Progress
from safetensors.torch import load_file, save_file
from torch.utils.tensorboard import SummaryWriter

from sandbox_rl.agents.lora import LoraSettings, TaskAdapters
from sandbox_rl.agents.models import load_model
from sandbox_rl.agents.task_specs import spec
from sandbox_rl.run_folders import (LLM_PPO, RunInterrupted, recover_folder, remove_outputs,
                                    why_not_run_folder)
from sandbox_rl.training.common import (EVALUATIONS, RESUME_DIR, evaluate_trained_and_untrained,
                                        interrupted_message, prepare_out_dir, print_evaluations,
                                        read_resume_point, require, save_resume_point)
# The config lives with the other trainers' (the CLI reads it without importing this module).
from sandbox_rl.training.configs import LLMPPOConfig
# The resume point's files and the check of --resume live apart: the CLI runs the check before
# it imports this module.
from sandbox_rl.training.llm_ppo_resume import (LEARNER, MARKER, RESUMABLE_RUN, InProgress,
                                                in_progress, resume_config)
from sandbox_rl.training.ppo import PPOLearner, PPOSettings
from sandbox_rl.training.protocol import ProtocolConfig
from sandbox_rl.training.task_episodes import (collect_episode, cut_at_stop, rollout_settings,
                                               with_temperature)


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


@dataclass
class Trained:
    """What the run has trained, as its resume point holds it: the finished tasks' update
    statistics (in task order) and the task in progress, if any."""

    tasks: dict[str, list[dict]]
    current: InProgress | None = None

    def updates_done(self, per_task: int) -> int:
        """The PPO updates done, of tasks of ``per_task`` each (where the progress bar starts)."""
        return len(self.tasks) * per_task + (len(self.current.updates) if self.current else 0)


def _state(cfg: LLMPPOConfig, updates: dict[str, list[dict]],
           current: InProgress | None = None) -> dict:
    """The resume point's state: the config, the trained tasks' update statistics and the task
    in progress (none: a point of a finished task, or one saved before there were any)."""
    state = {"config": asdict(cfg), "tasks": {t: {"updates": u} for t, u in updates.items()}}
    if current is not None:
        state["in_progress"] = asdict(current)
    return state


def train_llm_ppo(cfg: LLMPPOConfig, given: set[str] | None = None) -> LLMPPORun:
    """Train every task (or with ``cfg.resume``, the unfinished ones; ``given``: see
    :func:`resume_config`), then evaluate. Ctrl-C: :class:`RunInterrupted` saying what was
    kept."""
    if cfg.resume is not None:
        cfg = resume_config(cfg, given)
        out = Path(cfg.out)
    else:
        out = _prepare_out(cfg)
    torch.set_num_threads(cfg.threads)
    console = Console(stderr=True, quiet=cfg.quiet)
    adapters = TaskAdapters(load_model(cfg.model), list(cfg.tasks), LoraSettings(rank=cfg.lora_rank),
                            cfg.seed)
    trained, learner = _resumed(adapters, cfg, out) if cfg.resume is not None \
        else (Trained({}), None)
    try:
        _train_tasks(adapters, cfg, out, trained, console, learner)
    except KeyboardInterrupt:
        raise RunInterrupted(_interrupted(cfg, out, trained)) from None
    adapters.save(out / "adapters")
    try:
        reports = _evaluate(adapters, cfg, out)
    except KeyboardInterrupt:
        raise RunInterrupted(f"interrupted during the evaluation (the {len(cfg.tasks)} tasks are "
                             f"trained); {_resume_hint(out)}") from None
    run = LLMPPORun(cfg, trained.tasks, reports)
    (out / MARKER).write_text(json.dumps(run.saved(), indent=1))
    shutil.rmtree(out / RESUME_DIR, ignore_errors=True)  # results.json holds it all now
    return run


def _train_tasks(adapters, cfg: LLMPPOConfig, out: Path, trained: Trained, console,
                 learner=None) -> None:
    """PPO on every task not finished in ``trained`` (the task in progress from its next update,
    with the ``learner`` :func:`_resumed` restored); ``trained`` and the resume point follow
    every update."""
    writer = SummaryWriter(str(out / "tb"))
    try:
        with Progress(console=console) as progress:
            bar = progress.add_task("llm-ppo", total=len(cfg.tasks) * cfg.updates,
                                    completed=trained.updates_done(cfg.updates))

            def done(task: str, update: int, stats: dict) -> None:
                for key, value in stats.items():
                    writer.add_scalar(f"{task}/{key}", value, update)
                progress.update(bar, advance=1, description=f"{task} update {update}: "
                                f"reward {stats['mean_reward']:.3f}")

            for task in cfg.tasks[len(trained.tasks):]:
                _train_task(adapters, cfg, out, task, trained, learner, done)
                learner = None  # the restored one was the task in progress's
    finally:
        writer.close()


def _train_task(adapters, cfg: LLMPPOConfig, out: Path, task: str, trained: Trained, learner,
                done) -> None:
    """The remaining PPO updates of ``task`` (all, unless it is ``trained.current``); after each,
    ``done(task, update, stats)`` and the resume point (of the task in progress, or of the
    finished task after its last update)."""
    s = with_temperature(spec(task), cfg.rollout_temperature)
    current = trained.current if trained.current and trained.current.task == task else None
    learner = learner if learner is not None else _learner(adapters, cfg)
    train = [collect_episode(task, seed, cfg.steps, cfg.users) for seed in cfg.train_seeds]
    rng = current.generator() if current else np.random.default_rng(cfg.seed)
    stats = list(current.updates) if current else []
    for update in range(len(stats), cfg.updates):
        stats.append(asdict(episode_update(learner, task, train, cfg.prompts_per_update, rng, s)))
        done(task, update + 1, stats[-1])
        if (update + 1) % cfg.checkpoint_every == 0:
            adapters.save(out / "checkpoints" / f"{task}_update{update + 1}")
        if update + 1 < cfg.updates:
            _save_in_progress(out, adapters, cfg, trained,
                              InProgress(task, list(stats), rng.bit_generator.state), learner)
    trained.tasks[task], trained.current = stats, None
    save_resume_point(out, adapters, _state(cfg, trained.tasks))


def _learner(adapters, cfg: LLMPPOConfig):
    """A fresh PPO learner of the run's settings (one per task: its updates count from 0)."""
    return PPOLearner(adapters, ppo_settings(cfg.prompts_per_update, cfg.samples_per_prompt,
                                             cfg.ppo_epochs, cfg.learning_rate, cfg.seed,
                                             cfg.kl_coef))


def _save_in_progress(out: Path, adapters, cfg: LLMPPOConfig, trained: Trained,
                      current: InProgress, learner) -> None:
    """The resume point after an update of the task ``current``: the adapters, the state with
    ``current`` and the learner's state of its adapter (:data:`LEARNER`, safetensors);
    ``trained.current`` once it is saved (so Ctrl-C never reports more than was kept)."""
    tensors = learner.optimizer_state(current.task)
    save_resume_point(out, adapters, _state(cfg, trained.tasks, current),
                      lambda folder: save_file(tensors, str(folder / LEARNER)))
    trained.current = current


def _evaluate(adapters, cfg: LLMPPOConfig, out: Path) -> dict:
    """The evaluation protocol on the held-out worlds for the trained and untrained adapters,
    the sampled arm decoded as the rollouts were."""
    config = ProtocolConfig(tasks=cfg.tasks, seeds=cfg.eval_seeds, steps=cfg.steps,
                            users=cfg.users, sampled=cfg.eval_samples, seed=cfg.seed)
    return evaluate_trained_and_untrained(adapters, config, out, cfg.model,
                                          cfg.rollout_temperature)


def _resume_hint(out: Path) -> str:
    return f"continue with: sandbox-rl train llm-ppo --resume {shlex.quote(str(out))}"


def _interrupted(cfg: LLMPPOConfig, out: Path, trained: Trained) -> str:
    """What Ctrl-C kept (the finished tasks, the updates of the task in progress) and how to
    continue."""
    current = trained.current
    return interrupted_message(out, list(trained.tasks), len(cfg.tasks), current and (
        f"{len(current.updates)} of {cfg.updates} updates of {current.task} kept"),
        _resume_hint(out), "interrupted before the first PPO update finished; nothing to "
                           "resume (run the command again)")


def _resumed(adapters, cfg: LLMPPOConfig, out: Path):
    """What the run in ``out`` trained (:class:`Trained`), the adapters of its finished tasks
    and of its task in progress loaded into ``adapters``, and that task's learner restored
    (None when there is none)."""
    recover_folder(out / RESUME_DIR)
    folder, state = read_resume_point(out)
    tasks = {task: t["updates"] for task, t in state["tasks"].items()}
    current = in_progress(cfg.resume, folder, state, cfg)
    names = [*tasks, *([current.task] if current else [])]
    if names:
        adapters.load(folder / "adapters", names=names)
    learner = _restored_learner(adapters, cfg, folder / LEARNER, current.task) if current \
        else None
    return Trained(tasks, current), learner


def _restored_learner(adapters, cfg: LLMPPOConfig, path: Path, task: str):
    """A learner holding the saved state of ``task``'s adapter (it must be complete: a missing
    moment would change the resumed run's numbers); ValueError naming ``resume`` otherwise."""
    learner = _learner(adapters, cfg)
    try:
        learner.load_optimizer_state(task, load_file(str(path)), complete=True)
    except (RuntimeError, ValueError) as err:  # torch's load_state_dict: RuntimeError
        require(False, "resume", cfg.resume, f"{RESUMABLE_RUN} (its learner state "
                                             f"({path.name}) does not load: {str(err)[:200]})")
    return learner


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
    within the task's token budget and choices, as :func:`as_trained` says for ``task_spec`` (default the
    task's spec)."""
    s = task_spec or spec(episodes[0].task)
    pool = [(e, i) for e in episodes for i in range(len(e.steps))]
    picks = [pool[j] for j in rng.choice(len(pool), prompts, replace=len(pool) < prompts)]
    observations = [e.steps[i].observation for e, i in picks]
    learner.settings, choices = rollout_settings(learner.settings, s, observations,
                                                 learner.adapters.tokenizer)
    texts = [s.prompt(learner.adapters.tokenizer, o) for o in observations]

    def reward_fn(indices, completions):
        # TRL's rollouts stop only at the end-of-sequence token: score exactly the text that
        # generation (evaluation, the live sandbox) keeps, cut at the task's stop strings.
        return [picks[k][0].score(picks[k][1], s.answer(picks[k][0].steps[picks[k][1]].observation,
                                                        cut_at_stop(text, s.sampling.stop)))
                for k, text in zip(indices, completions)]

    return learner.update(adapter, texts, reward_fn, choices)


def ppo_settings(prompts: int, samples_per_prompt: int, ppo_epochs: int, learning_rate: float,
                 seed: int, kl_coef: float = 0.05):
    """PPO settings for updates of ``prompts`` prompts sampled ``samples_per_prompt`` times each
    (one PPO batch, mini-batches of up to 4 rollouts)."""
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
