"""LLM PPO: train the task LoRA adapters with TRL PPO on the env's rewards (``sandbox-rl train
llm-ppo``).

For each task: training episodes (seeds ``train_seeds``) give the prompts and the snapshots
their completions are scored against (``training/task_episodes.py``); ``updates`` PPO updates
(``training/ppo.py``, ``trl.experimental.ppo``) train the task's adapter; the trained and the
untrained adapter (PEFT's fresh adapter: the base model) then answer every step of held-out
episodes (seeds ``eval_seeds``) greedily and sampled as in training, scored by counterfactual
env steps, next to the task's heuristic and random actions scored the same way. The run folder
holds the adapters in PEFT's format (``adapters/``, and ``checkpoints/`` every
``checkpoint_every`` updates), TensorBoard scalars of every update (``tb/``) and the table
(``results.json``). As for the other trainers, a folder holding a finished run (its
``results.json``) is refused unless ``--overwrite``, which first removes that run's outputs
(only those: ``tb/``, ``checkpoints/``, ``adapters/``, ``results.json``), so TensorBoard files of
two runs never mix.

Interrupting and resuming: after each finished task (trained and scored), ``resume/`` is
replaced atomically by the adapters and the results so far; Ctrl-C stops the run (the task in
progress is lost) with a message saying how to continue, and ``--resume RUN`` keeps the run's
settings (``--threads`` and ``--quiet`` may change), loads the finished tasks' adapters and
results and trains the others. Every task starts from its own seeds, so the resumed run's
numbers are those of the run never stopped.
"""

from __future__ import annotations

import json
import shlex
import shutil
import time
from dataclasses import asdict, dataclass
from dataclasses import field as dc_field
from pathlib import Path

import numpy as np

from sandbox_rl.enums import TaskType
from sandbox_rl.run_folders import RunInterrupted
from sandbox_rl.training.common import field, prepare_out_dir, require

ALL_TASKS = tuple(t.value for t in TaskType)
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
    train_seeds: tuple[int, ...] = field((0, 1), "world seeds of the training episodes")
    eval_seeds: tuple[int, ...] = field((1000, 1001, 1002), "held-out world seeds")
    steps: int = field(8, "env steps per episode")
    users: int = field(1000, "simulated users")
    learning_rate: float = field(1e-4, "AdamW learning rate of the adapters")
    kl_coef: float = field(0.05, "KL penalty toward the base model")
    lora_rank: int = field(8, "LoRA rank of the adapters")
    eval_samples: int = field(4, "sampled answers per held-out step, decoded as PPO's rollouts "
                                 "(beside the greedy answer)")
    seed: int = field(0, "seed of the learner and the prompt sampling")
    threads: int = field(2, "torch CPU threads")
    checkpoint_every: int = field(10, "save the adapters every this many updates of a task")
    out: str = field("runs/llm_ppo", "run folder: adapters (PEFT format), checkpoints/, tb/, "
                                     "results.json")
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
        for name in ("updates", "prompts_per_update", "samples_per_prompt", "ppo_epochs", "steps",
                     "lora_rank", "threads", "eval_samples", "checkpoint_every"):
            value = getattr(self, name)
            require(isinstance(value, int) and value >= 1, name, value, "an integer >= 1")
        require(isinstance(self.users, int) and self.users >= 50, "users", self.users,
                "an integer >= 50")
        require(self.learning_rate > 0, "learning_rate", self.learning_rate, "> 0")
        require(self.kl_coef >= 0, "kl_coef", self.kl_coef, ">= 0")
        require(0 <= self.rollout_temperature <= 5, "rollout_temperature",
                self.rollout_temperature, "in [0, 5]")
        self.train_seeds, self.eval_seeds = tuple(self.train_seeds), tuple(self.eval_seeds)
        require(bool(self.train_seeds), "train_seeds", self.train_seeds, "one or more seeds")
        require(bool(self.eval_seeds), "eval_seeds", self.eval_seeds, "one or more seeds")
        clash = sorted(set(self.train_seeds) & set(self.eval_seeds))
        require(not clash, "eval_seeds", self.eval_seeds,
                f"seeds not in train_seeds (held-out evaluation; {clash} overlap)")


@dataclass
class TaskResult:
    task: str
    untrained: list[float] = dc_field(default_factory=list)  # mean reward per eval seed
    trained: list[float] = dc_field(default_factory=list)
    untrained_parse: float = 0.0
    trained_parse: float = 0.0
    untrained_sampled: list[float] = dc_field(default_factory=list)  # decoded as in training
    trained_sampled: list[float] = dc_field(default_factory=list)
    heuristic: list[float] = dc_field(default_factory=list)  # the env's baselines, same steps
    random: list[float] = dc_field(default_factory=list)
    updates: list[dict] = dc_field(default_factory=list)


def train_llm_ppo(cfg: LLMPPOConfig, given: set[str] | None = None) -> dict[str, TaskResult]:
    """Train and score every task (or with ``cfg.resume``, the unfinished ones; ``given``: see
    :func:`resume_config`). Ctrl-C: :class:`RunInterrupted` saying what was kept."""
    import torch
    from rich.console import Console
    from rich.progress import Progress
    from torch.utils.tensorboard import SummaryWriter

    from sandbox_rl.agents.lora import LoraSettings, TaskAdapters
    from sandbox_rl.agents.models import load_model
    from sandbox_rl.agents.task_specs import spec
    from sandbox_rl.training.common import RESUME_DIR, save_resume_point
    from sandbox_rl.training.ppo import PPOLearner
    from sandbox_rl.training.task_episodes import collect_episode, with_temperature

    if cfg.resume is not None:
        cfg = resume_config(cfg, given)
        out = Path(cfg.out)
    else:
        out = _prepare_out(cfg)
    torch.set_num_threads(cfg.threads)
    console = Console(stderr=True, quiet=cfg.quiet)
    adapters = TaskAdapters(load_model(cfg.model), list(cfg.tasks), LoraSettings(rank=cfg.lora_rank),
                            cfg.seed)
    results: dict[str, TaskResult] = _resumed(adapters, out) if cfg.resume is not None else {}
    writer = SummaryWriter(str(out / "tb"))
    try:
        with Progress(console=console) as progress:
            bar = progress.add_task("llm-ppo", total=len(cfg.tasks) * (cfg.updates + 2),
                                    completed=len(results) * (cfg.updates + 2))
            for task in cfg.tasks[len(results):]:
                s = with_temperature(spec(task), cfg.rollout_temperature)
                learner = PPOLearner(adapters, ppo_settings(
                    cfg.prompts_per_update, cfg.samples_per_prompt, cfg.ppo_epochs,
                    cfg.learning_rate, cfg.seed, cfg.kl_coef))
                train = [collect_episode(task, seed, cfg.steps, cfg.users)
                         for seed in cfg.train_seeds]
                held_out = [collect_episode(task, seed, cfg.steps, cfg.users)
                            for seed in cfg.eval_seeds]
                result = _with_baselines(task, held_out)
                _score(result, "untrained", adapters, task, held_out, s, cfg.eval_samples)
                progress.advance(bar)
                rng = np.random.default_rng(cfg.seed)
                for update in range(cfg.updates):
                    stats = episode_update(learner, task, train, cfg.prompts_per_update, rng, s)
                    result.updates.append(asdict(stats))
                    for key, value in asdict(stats).items():
                        writer.add_scalar(f"{task}/{key}", value, update + 1)
                    if (update + 1) % cfg.checkpoint_every == 0:
                        adapters.save(out / "checkpoints" / f"{task}_update{update + 1}")
                    progress.update(bar, advance=1, description=f"{task} update {update + 1}: "
                                                                f"reward {stats.mean_reward:.3f}")
                _score(result, "trained", adapters, task, held_out, s, cfg.eval_samples)
                progress.advance(bar)
                results[task] = result
                save_resume_point(out, adapters, _saved(cfg, results))
    except KeyboardInterrupt:
        raise RunInterrupted(_interrupted(cfg, out, results)) from None
    finally:
        writer.close()
    adapters.save(out / "adapters")
    (out / "results.json").write_text(json.dumps(_saved(cfg, results), indent=1))
    shutil.rmtree(out / RESUME_DIR, ignore_errors=True)  # results.json holds it all now
    return results


def _saved(cfg: LLMPPOConfig, results: dict[str, TaskResult]) -> dict:
    return {"config": asdict(cfg), "results": {t: asdict(r) for t, r in results.items()}}


def _interrupted(cfg: LLMPPOConfig, out: Path, results: dict) -> str:
    if not results:
        return ("interrupted before the first task finished; nothing to resume (run the "
                "command again)")
    return (f"interrupted: {len(results)} of {len(cfg.tasks)} tasks finished "
            f"({', '.join(results)}), saved in {out / 'resume'}; continue with: sandbox-rl "
            f"train llm-ppo --resume {shlex.quote(str(out))}")


def resume_config(cfg: LLMPPOConfig, given: set[str] | None = None) -> LLMPPOConfig:
    """The config ``cfg.resume`` continues with: the run's own, with the flags in ``given``
    that may change (:data:`FREE_ON_RESUME`). Checks, changing nothing, that the folder holds an
    interrupted llm-ppo run and that no other given setting differs; ValueError naming the
    field otherwise."""
    from sandbox_rl.training.common import read_resume_point, resume_settings

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
        results = point[1]["results"]
        if not isinstance(results, dict) or list(results) != list(config.tasks[:len(results)]):
            raise ValueError("its finished tasks are not the first of its tasks")
        for r in results.values():
            TaskResult(**r)
    except (KeyError, TypeError, ValueError) as err:
        require(False, "resume", cfg.resume, f"{what} (its saved settings do not load: "
                                             f"{str(err)[:200]})")
    return resume_settings(cfg, config, run, given, FREE_ON_RESUME)


def _resumed(adapters, out: Path) -> dict[str, TaskResult]:
    """The results of the finished tasks, their adapters loaded into ``adapters``."""
    from sandbox_rl.run_folders import recover_folder
    from sandbox_rl.training.common import RESUME_DIR, read_resume_point

    recover_folder(out / RESUME_DIR)
    folder, state = read_resume_point(out)
    results = {task: TaskResult(**r) for task, r in state["results"].items()}
    if results:
        adapters.load(folder / "adapters", names=list(results))
    return results


def _prepare_out(cfg: LLMPPOConfig) -> Path:
    """The other trainers' rule (``prepare_out_dir``); with ``overwrite``, an earlier llm-ppo
    run's outputs are removed first (nothing else in the folder)."""
    from sandbox_rl.run_folders import LLM_PPO, remove_outputs, why_not_run_folder

    out = prepare_out_dir(cfg.out, cfg.overwrite, MARKER)
    if cfg.overwrite and why_not_run_folder(out, LLM_PPO, whole=False) is None:
        remove_outputs(out, LLM_PPO)
    return out


def episode_update(learner, adapter: str, episodes, prompts: int, rng: np.random.Generator,
                   task_spec=None):
    """One PPO update of ``adapter`` on ``prompts`` steps drawn by ``rng`` from ``episodes`` (of
    one task), each rollout scored by the env in a counterfactual step of its snapshot; decoded
    within the task's token budget, as :func:`as_trained` says for ``task_spec`` (default the
    task's spec)."""
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
    from sandbox_rl.training.ppo import PPOSettings

    rollouts = prompts * samples_per_prompt
    return PPOSettings(learning_rate=learning_rate, kl_coef=kl_coef, seed=seed,
                       rollouts_per_update=rollouts, mini_batch_size=min(4, rollouts),
                       samples_per_prompt=samples_per_prompt, ppo_epochs=ppo_epochs)


def _with_baselines(task: str, held_out) -> TaskResult:
    """A task's result holding the heuristic and random actions' held-out rewards."""
    return TaskResult(task, heuristic=[e.baseline("heuristic") for e in held_out],
                      random=[e.baseline("random") for e in held_out])


def reevaluate(run: str | Path, eval_seeds: tuple[int, ...], eval_samples: int | None = None,
               threads: int = 2) -> tuple[LLMPPOConfig, dict[str, TaskResult]]:
    """Score the adapters a finished run saved (``run/adapters``) and the untrained ones on
    other held-out worlds ``eval_seeds``, with the run's own settings (``run/results.json``)."""
    import torch

    from sandbox_rl.agents.lora import LoraSettings, TaskAdapters
    from sandbox_rl.agents.models import load_model
    from sandbox_rl.agents.task_specs import spec
    from sandbox_rl.training.task_episodes import collect_episode, with_temperature

    run = Path(run)
    try:
        saved = json.loads((run / "results.json").read_text())["config"]
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"{run} is not a finished llm-ppo run folder (results.json: {err})")
    cfg = LLMPPOConfig(**{**saved, "eval_seeds": tuple(eval_seeds), "out": str(run),
                          "eval_samples": eval_samples or saved["eval_samples"],
                          "threads": threads})
    torch.set_num_threads(cfg.threads)
    adapters = TaskAdapters(load_model(cfg.model), list(cfg.tasks), LoraSettings(rank=cfg.lora_rank),
                            cfg.seed)
    held_out = {task: [collect_episode(task, seed, cfg.steps, cfg.users)
                       for seed in cfg.eval_seeds] for task in cfg.tasks}
    results = {task: _with_baselines(task, episodes) for task, episodes in held_out.items()}
    for label in ("untrained", "trained"):
        if label == "trained":
            adapters.load(run / "adapters")
        for task, episodes in held_out.items():
            _score(results[task], label, adapters, task, episodes,
                   with_temperature(spec(task), cfg.rollout_temperature), cfg.eval_samples)
    return cfg, results


def _score(result: TaskResult, label: str, adapters, task, held_out, task_spec,
           samples: int) -> None:
    """Fill ``result``'s ``label`` ("untrained" / "trained") figures: greedy reward per seed,
    parse rate, and reward per seed sampled as in training."""
    from sandbox_rl.training.task_episodes import greedy

    greedy_, parse = _per_seed(adapters, task, held_out, greedy(task_spec))
    setattr(result, label, greedy_)
    setattr(result, f"{label}_parse", parse)
    setattr(result, f"{label}_sampled", _per_seed_sampled(adapters, task, held_out, task_spec,
                                                          samples))


def _per_seed_sampled(adapters, task, episodes, task_spec, samples: int) -> list[float]:
    from sandbox_rl.training.task_episodes import evaluate_sampled

    return [evaluate_sampled(adapters, task, [e], task_spec, samples).mean_reward
            for e in episodes]


def _per_seed(adapters, task, episodes, task_spec):
    from sandbox_rl.training.task_episodes import evaluate

    evals = [evaluate(adapters, task, [e], task_spec) for e in episodes]
    return [e.mean_reward for e in evals], float(np.mean([e.parse_rate for e in evals]))


def train(cfg: LLMPPOConfig, given: set[str] | None = None
          ) -> tuple[LLMPPOConfig, dict[str, TaskResult]]:
    """The ``train llm-ppo`` entry point."""
    if cfg.resume is not None:
        cfg = resume_config(cfg, given)
    return cfg, train_llm_ppo(cfg)


def report(result: tuple[LLMPPOConfig, dict[str, TaskResult]], console) -> None:
    cfg, results = result
    print_table(results, cfg, console)


def print_table(results: dict[str, TaskResult], cfg: LLMPPOConfig, console) -> None:
    from rich.table import Table

    from sandbox_rl.training.evaluation import Score

    table = Table(title=f"LLM PPO on {cfg.model}: held-out reward (seeds {list(cfg.eval_seeds)}, "
                        f"{cfg.steps} steps each; greedy, and sampled as in training with "
                        f"{cfg.eval_samples} answers per step), mean ± 95% interval over seeds")
    for col in ("task", "random", "heuristic", "greedy untrained", "greedy trained",
                "difference", "sampled untrained", "sampled trained", "difference",
                "parse untrained", "parse trained"):
        table.add_column(col, justify="left" if col == "task" else "right")
    for task, r in results.items():
        row = [task, str(Score(tuple(r.random))), str(Score(tuple(r.heuristic)))]
        for before, after in ((r.untrained, r.trained), (r.untrained_sampled, r.trained_sampled)):
            row += [str(Score(tuple(before))), str(Score(tuple(after))),
                    str(Score(tuple(np.subtract(after, before))))]
        table.add_row(*row, f"{r.untrained_parse:.2f}", f"{r.trained_parse:.2f}")
    console.print(table)
    console.print(f"adapters saved in PEFT format under {cfg.out}/adapters (checkpoints/, "
                  f"TensorBoard tb/); numbers in {cfg.out}/results.json")
