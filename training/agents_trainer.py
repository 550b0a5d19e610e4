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
adapters and the training log so far; while a task is in progress also after each of its
expert-iteration rounds, by what its next round depends on (:class:`InProgress`): its adapter's
current weights (with the others), the best weights so far (``best.safetensors``) with their
and the start's validation rewards, every example so far (``examples.json``), the round log,
the position in the stream of training worlds (counts: the worlds are collected again from
their seeds) and the wall time used. The PPO phase is not split: a resume point is saved when
the rounds end, and a run stopped during PPO starts that phase again from the kept weights.
Ctrl-C stops the run with a message saying how many tasks and rounds were kept and how to
continue; ``--resume RUN`` keeps the run's settings (``--minutes``, ``--threads`` and
``--quiet`` may change), loads the finished tasks' adapters, continues the task in progress
from its next round with what is left of its budget (``minutes`` less the time it used, split
by ``ppo_share`` as before), trains the others and evaluates; a run interrupted during the
evaluation only evaluates. The budget is wall time, so a resumed task may run other rounds than
a run never stopped; with the same rounds its examples, statistics and weights are the same.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import Progress
from safetensors.torch import load_file, save_file
from torch.utils.tensorboard import SummaryWriter

from sandbox_rl.agents.lora import LoraSettings, TaskAdapters
from sandbox_rl.agents.models import load_model
from sandbox_rl.agents.task_specs import spec
from sandbox_rl.run_folders import RunInterrupted, read_json, recover_folder
from sandbox_rl.seeding import derived_seed
# The resume point's files and the check of --resume live apart: the CLI runs the check before
# it imports this module.
from sandbox_rl.training.agents_resume import (BEST, EXAMPLES, MARKER, RESUMABLE_RUN, InProgress,
                                               in_progress, resume_config, saved_examples)
from sandbox_rl.training.common import (RESUME_DIR, evaluate_trained_and_untrained,
                                        import_optional, interrupted_message, prepare_out_dir,
                                        print_evaluations, read_resume_point, require,
                                        save_resume_point)
# The config lives with the other trainers' (the CLI reads it without importing this module).
from sandbox_rl.training.configs import FIRST_VALIDATION_SEED, AgentsConfig
from sandbox_rl.training.expert_iteration import (Example, RoundSettings, Rounds, run_rounds,
                                                  states_of, validation_reward)
from sandbox_rl.training.expert_iteration_ray import RayProposer, Worlds
from sandbox_rl.training.llm_ppo import ppo_settings
from sandbox_rl.training.ppo import PPOLearner
from sandbox_rl.training.protocol import ProtocolConfig
from sandbox_rl.training.protocol_ray import play_on_ray
from sandbox_rl.training.ray_runtime import DEFAULT_WORKERS, check_address, ray_session
from sandbox_rl.training.task_episodes import collect_episode, cut_at_stop, rollout_settings


class TrainingWorlds:
    """States of training worlds 0-899 in an order drawn from ``seed``, ``world_steps`` states
    per world of ``users`` users; call with a count. :meth:`position` and :meth:`restore`: where
    the stream stands, as counts (the worlds are collected again from their seeds)."""

    def __init__(self, task: str, seed: int, world_steps: int, users: int) -> None:
        self.task, self.world_steps, self.users = task, world_steps, users
        rng = np.random.default_rng(derived_seed(seed, task, "worlds"))
        self.order = rng.permutation(FIRST_VALIDATION_SEED).tolist()
        self.pending: list = []
        self.episodes: list = []  # every world collected so far (PPO draws from them)
        self.taken = 0  # states handed out so far

    def __call__(self, count: int) -> list:
        while len(self.pending) < count:
            self._collect()
        taken, self.pending = self.pending[:count], self.pending[count:]
        self.taken += count
        return taken

    def _collect(self) -> None:
        seed = self.order[len(self.episodes) % len(self.order)]
        episode = collect_episode(self.task, seed, self.world_steps, self.users)
        self.episodes.append(episode)
        self.pending += states_of([episode])

    def position(self) -> dict[str, int]:
        """The worlds collected and the states taken so far (JSON)."""
        return {"collected": len(self.episodes), "taken": self.taken}

    def restore(self, collected: int, taken: int) -> None:
        """Continue a fresh stream from :meth:`position`'s ``collected`` and ``taken``: those
        worlds collected again, the states not taken yet pending; ValueError when they are not
        a position of this stream."""
        if self.episodes or self.taken:
            raise ValueError("restore a fresh stream")
        while len(self.episodes) < collected:
            self._collect()
        # A world is collected only when the states before it do not suffice.
        total = len(self.pending)
        before_last = total - len(self.episodes[-1].steps) if self.episodes else 0
        if not (before_last < taken <= total or collected == taken == 0):
            raise ValueError(f"{taken} states taken from {collected} worlds of {total} states "
                             f"is not a position of the stream")
        self.pending, self.taken = self.pending[taken:], taken


@dataclass
class Trained:
    """What the run has trained, as its resume point holds it: the finished tasks' training logs
    (in task order) and the task in progress, if any."""

    tasks: dict[str, dict]
    current: InProgress | None = None

    def seconds_done(self, cfg: AgentsConfig) -> float:
        """The budgeted seconds done (where the progress bar starts)."""
        return len(self.tasks) * cfg.minutes * 60 + (self.current.seconds if self.current
                                                     else 0.0)


def _state(cfg: AgentsConfig, tasks: dict[str, dict], current: InProgress | None = None) -> dict:
    """The resume point's state (and ``training.json``): the config, the finished tasks' logs
    and the task in progress (none: a point saved between tasks, or by an earlier version)."""
    state = {"config": asdict(cfg), "tasks": tasks}
    if current is not None:
        state["in_progress"] = asdict(current)
    return state


def _resumed(adapters, cfg: AgentsConfig, out: Path):
    """What the run in ``out`` trained (:class:`Trained`), the adapters of its finished tasks
    and of its task in progress loaded into ``adapters``, and that task's rounds restored
    (``expert_iteration.Rounds``; None when there is no task in progress or its rounds are
    over)."""
    if (out / MARKER).exists():
        adapters.load(out / "adapters")
        return Trained(read_json(out / MARKER)["tasks"]), None
    recover_folder(out / RESUME_DIR)
    folder, state = read_resume_point(out)
    current = in_progress(cfg.resume, folder, state, cfg)
    names = [*state["tasks"], *([current.task] if current else [])]
    if names:
        adapters.load(folder / "adapters", names=names)
    rounds = _restored_rounds(adapters, cfg, folder, current) \
        if current is not None and current.phase == "rounds" else None
    return Trained(state["tasks"], current), rounds


def _restored_rounds(adapters, cfg: AgentsConfig, folder: Path, current: InProgress):
    """The rounds of the task in progress as they stood (its best weights must be its
    adapter's: names, shapes and dtypes); ValueError naming ``resume`` otherwise."""
    best, own = load_file(str(folder / BEST)), adapters.state(current.task)
    require(best.keys() == own.keys() and all(
        (best[k].shape, best[k].dtype) == (v.shape, v.dtype) for k, v in own.items()),
        "resume", cfg.resume, f"{RESUMABLE_RUN} (its best weights ({BEST}) are not weights of "
                              f"the adapter {current.task})")
    examples = [Example(**e) for e in saved_examples(folder / EXAMPLES)]
    return Rounds(current.start_reward, current.best_reward, best, examples, current.done)


def train_agents(cfg: AgentsConfig, given: set[str] | None = None) -> dict:
    """Train (or with ``cfg.resume``, continue; ``given``: see :func:`resume_config`) and
    evaluate. Ctrl-C: :class:`RunInterrupted` saying what was kept."""
    if cfg.ray_address is not None:  # before anything is written or loaded
        check_address(cfg.ray_address, "ray_address")
        import_optional("ray", "rllib")
    if cfg.resume is not None:
        cfg = resume_config(cfg, given)
        out = Path(cfg.out)
    else:
        out = prepare_out_dir(cfg.out, cfg.overwrite, MARKER)
    torch.set_num_threads(cfg.threads)
    console = Console(stderr=True, quiet=cfg.quiet)
    adapters = TaskAdapters(load_model(cfg.model), list(cfg.tasks),
                            LoraSettings(rank=cfg.lora_rank), cfg.seed)
    trained, rounds = _resumed(adapters, cfg, out) if cfg.resume is not None \
        else (Trained({}), None)
    with _on_ray(cfg) as proposer:
        return _train_and_evaluate(adapters, cfg, out, console, trained, rounds, proposer)


def _train_and_evaluate(adapters, cfg: AgentsConfig, out: Path, console, trained: Trained,
                        rounds, proposer) -> dict:
    if not (out / MARKER).exists():
        writer = SummaryWriter(str(out / "tb"))
        try:
            with Progress(console=console) as progress:
                bar = progress.add_task("train agents", total=len(cfg.tasks) * cfg.minutes * 60,
                                        completed=trained.seconds_done(cfg))
                for task in cfg.tasks[len(trained.tasks):]:
                    log = _train_task(adapters, task, cfg, out, trained, rounds, writer,
                                      progress, bar, proposer)
                    rounds = None  # the restored rounds were the task in progress's
                    adapters.save(out / "adapters")
                    save_resume_point(out, adapters, _state(cfg, {**trained.tasks, task: log}))
                    trained.tasks[task], trained.current = log, None
        except KeyboardInterrupt:
            raise RunInterrupted(_interrupted(cfg, out, trained)) from None
        finally:
            writer.close()
        (out / MARKER).write_text(json.dumps(_state(cfg, trained.tasks), indent=1))
        shutil.rmtree(out / RESUME_DIR, ignore_errors=True)  # training.json holds it all now
    if proposer is not None:
        proposer.close()  # its actors' CPUs go to the evaluation's
    try:
        reports = _evaluate(adapters, cfg, out, proposer is not None)
    except KeyboardInterrupt:
        raise RunInterrupted(f"interrupted during the evaluation (the {len(cfg.tasks)} tasks are "
                             f"trained); {_resume_hint(out)}") from None
    return {"config": cfg, "log": trained.tasks, "reports": reports}


def _resume_hint(out: Path) -> str:
    return f"continue with: sandbox-rl train agents --resume {shlex.quote(str(out))}"


def _interrupted(cfg: AgentsConfig, out: Path, trained: Trained) -> str:
    """What Ctrl-C kept (the finished tasks, the rounds of the task in progress) and how to
    continue."""
    current = trained.current
    return interrupted_message(out, list(trained.tasks), len(cfg.tasks), current and (
        f"{current.done} expert-iteration round{'s' * (current.done != 1)} of {current.task} "
        f"kept" + (" (its PPO phase starts again)" if current.phase == "ppo" else "")),
        _resume_hint(out), "interrupted before the first expert-iteration round finished; "
                           "nothing to resume (run the command again, with --overwrite if asked)")


@contextlib.contextmanager
def _on_ray(cfg: AgentsConfig):
    """With ``--ray-address``: a Ray session for the whole run (shut down on exit) and the
    ``RayProposer`` of its rounds; without, None."""
    if cfg.ray_address is None:
        yield None
        return
    threads = _worker_threads(cfg)
    with ray_session(cfg.ray_address, threads, _workers(cfg) * threads, field="ray_address"):
        yield RayProposer(_workers(cfg), cfg.model, cfg.tasks, cfg.lora_rank, cfg.seed,
                          threads, Worlds(cfg.world_steps, cfg.users))


def _workers(cfg: AgentsConfig) -> int:
    return cfg.workers or DEFAULT_WORKERS


def _worker_threads(cfg: AgentsConfig) -> int:
    return cfg.worker_threads or cfg.threads


def _train_task(adapters, task: str, cfg: AgentsConfig, out: Path, trained: Trained, rounds,
                writer, progress, bar, proposer=None) -> dict:
    """Expert-iteration rounds, then PPO, on ``task`` within its budget; the task in progress
    (``trained.current``) from where it stopped: its next round (``rounds`` as
    :func:`_resumed` restored them) or its PPO phase. The resume point after each round and when
    the rounds end (``trained.current`` follows it). Returns the task's training log."""
    current = trained.current if trained.current and trained.current.task == task else None
    # The budget is wall time: a resumed task has what the time it used leaves of it.
    start = time.perf_counter() - (current.seconds if current else 0.0)
    budget = cfg.minutes * 60
    settings = RoundSettings(
        samples=cfg.samples, temperature=cfg.temperature, draws=cfg.draws, margin=0.0,
        heuristic_proposals=cfg.heuristic_proposals, learning_rate=cfg.learning_rate,
        batch_size=cfg.batch_size, epochs=1, seed=cfg.seed,
        enumerate_proposals=cfg.enumerate_proposals, enumeration_draws=cfg.enumeration_draws)
    validation = [collect_episode(task, s, cfg.world_steps, cfg.users)
                  for s in cfg.validation_seeds]
    worlds = TrainingWorlds(task, cfg.seed, cfg.world_steps, cfg.users)
    if current is not None:
        try:
            worlds.restore(**current.worlds)
        except ValueError as err:
            require(False, "resume", cfg.resume, f"{RESUMABLE_RUN} (its training worlds do not "
                                                 f"load: {err})")
    log = list(current.rounds) if current else []
    latest = [rounds]

    def save(phase: str, now) -> None:
        _save_in_progress(out, adapters, cfg, trained, InProgress(
            task, phase, now.done, list(log), float(now.start_reward), float(now.best_reward),
            worlds.position(), time.perf_counter() - start), now)

    def on_round(index, stats, reward, now) -> None:
        row = {**asdict(stats), "validation_reward": reward}
        log.append(row)
        for key in ("examples", "from_heuristic", "greedy_reward", "best_reward", "sft_loss",
                    "validation_reward"):
            writer.add_scalar(f"{task}/{key}", row[key], index + 1)
        progress.update(bar, completed=_done_before(cfg, task) + time.perf_counter() - start,
                        description=f"{task} round {index + 1}: validation {reward:.3f}, "
                                    f"{stats.examples} examples")
        latest[0] = now
        save("rounds", now)

    if current is None or current.phase == "rounds":
        first, kept = run_rounds(adapters, task, worlds, validation, settings,
                                 start + budget * (1 - cfg.ppo_share), cfg.states_per_round,
                                 on_round, rounds, proposer=proposer)
        # The rounds are over and the adapter holds the kept weights: PPO resumes from here.
        save("ppo", latest[0] or Rounds(first, kept, adapters.state(task), []))
    else:
        first, kept = current.start_reward, current.best_reward
    ppo = _ppo_phase(adapters, task, cfg, worlds.episodes, validation, kept, start + budget)
    progress.update(bar, completed=_done_before(cfg, task) + budget)
    return {"validation_untrained": first, "validation_after_rounds": kept, "rounds": log,
            "ppo": ppo, "worlds": len(worlds.episodes),
            "seconds": time.perf_counter() - start}


def _save_in_progress(out: Path, adapters, cfg: AgentsConfig, trained: Trained,
                      current: InProgress, rounds) -> None:
    """The resume point after a round of the task ``current`` (or when its rounds end): the
    adapters, the state with ``current``, and ``rounds``' best weights (:data:`BEST`,
    safetensors) and examples (:data:`EXAMPLES`, JSON); ``trained.current`` once it is saved
    (so Ctrl-C never reports more than was kept)."""
    best = {k: v.detach().cpu().contiguous() for k, v in rounds.best_state.items()}
    examples = json.dumps([{**asdict(e), "reward": float(e.reward),
                            "greedy_reward": float(e.greedy_reward)} for e in rounds.buffer])

    def extra(folder: Path) -> None:
        save_file(best, str(folder / BEST))
        (folder / EXAMPLES).write_text(examples)

    save_resume_point(out, adapters, _state(cfg, trained.tasks, current), extra)
    trained.current = current


def _done_before(cfg: AgentsConfig, task: str) -> float:
    return cfg.tasks.index(task) * cfg.minutes * 60


def _ppo_phase(adapters, task: str, cfg: AgentsConfig, episodes, validation, reward_before,
               deadline: float) -> dict:
    """TRL PPO updates until ``deadline``; rewards are expected rewards over re-seeded draws of
    exactly the text evaluation sees (cut at the task's stop strings). Kept only if the
    validation reward rises."""
    if cfg.ppo_share == 0 or not episodes or time.perf_counter() >= deadline:
        return {"updates": 0}
    s = spec(task)
    learner = PPOLearner(adapters, ppo_settings(4, 4, 2, cfg.ppo_learning_rate, cfg.seed, 0.01))
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

        observations = [e.steps[i].observation for e, i in picks]
        learner.settings, choices = rollout_settings(learner.settings, s, observations,
                                                     adapters.tokenizer)
        prompts = [s.prompt(adapters.tokenizer, o) for o in observations]
        stats.append(asdict(learner.update(task, prompts, reward_fn, choices)))
    after = validation_reward(adapters, task, validation)
    kept = after > reward_before
    if not kept:
        adapters.load_state(task, before)
    return {"updates": len(stats), "validation_after": after, "kept": kept, "stats": stats}


def _evaluate(adapters, cfg: AgentsConfig, out: Path, on_ray: bool = False) -> dict:
    """The evaluation protocol on the held-out worlds for the trained and untrained adapters
    (``on_ray``: the worlds played by the run's Ray workers, from the saved adapters)."""
    config = ProtocolConfig(tasks=cfg.tasks, seeds=cfg.eval_seeds, steps=cfg.eval_steps,
                            users=cfg.users, seed=cfg.seed)
    elsewhere = None
    if on_ray:
        def elsewhere(folder):
            return play_on_ray(config, folder, cfg.model, _workers(cfg), _worker_threads(cfg))
    return evaluate_trained_and_untrained(adapters, config, out, cfg.model, elsewhere=elsewhere)


def train(cfg: AgentsConfig, given: set[str] | None = None):
    """The ``train agents`` entry point."""
    return train_agents(cfg, given)


def report(result: dict, console) -> None:
    cfg = result["config"]
    print_evaluations(result["reports"], console)
    console.print(f"adapters (PEFT format) in {cfg.out}/adapters; TensorBoard in {cfg.out}/tb; "
                  f"held-out lines in {cfg.out}/eval_trained.jsonl and eval_untrained.jsonl")
