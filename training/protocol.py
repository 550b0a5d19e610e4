"""The held-out evaluation protocol behind every figure: one function, one set of worlds.

For each task and each held-out world seed (default 1000-1019, the registered held-out set) the
world is played for ``steps`` env steps and, on those same steps, four arms are scored:

- ``agents``: the task adapter's greedy answer (the primary figure);
- ``sampled`` (when asked): ``sampled`` answers per step decoded as PPO trains (``as_trained``);
- ``heuristic``: the task's heuristic structured action;
- ``random``: a uniformly random action of the task's structured space, seeded by the world seed.

``loop="open"``: the world is :func:`collect_episode`'s (the other roles play their heuristic,
the measured task its no-op) and every arm is scored counterfactually on each step's snapshot
with the step's own draws. ``loop="closed"``: the agent's greedy answer is what the env plays for
the task (its campaigns tire users, its recommender weights persist...), its reward is the env's
own, and the other arms are scored counterfactually on the snapshot taken before each step.

An arm's figure per world is its mean reward per step; the report gives the mean over worlds,
paired per-world differences against the baselines with 95% Student-t intervals, the share of
the random-to-heuristic gap an arm closes, and the parse rate (complete answers only).
:func:`evaluate_run` is the single entry point (``sandbox-rl evaluate`` calls it).
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich import box
from rich.console import Console
from rich.table import Table
from scipy import stats

from sandbox_rl.agents.generation import generate_batch
from sandbox_rl.agents.kv_cache import PrefixCacheStore
from sandbox_rl.agents.lora import LoraSettings, TaskAdapters
from sandbox_rl.agents.models import load_model
from sandbox_rl.agents.policy import env_action
from sandbox_rl.agents.task_specs import TaskSpec, spec
from sandbox_rl.enums import TaskType
from sandbox_rl.envs import oasis_v0
from sandbox_rl.envs.config import RECOMMENDERS, PlatformConfig
from sandbox_rl.envs.counterfactual import Counterfactual
from sandbox_rl.envs.heuristics import heuristic_action
from sandbox_rl.envs.state import snapshot
from sandbox_rl.training.task_episodes import (TaskEpisode, TaskStep, as_trained,
                                               collect_episode, greedy)
from sandbox_rl.validation import Int, OneOf, check_fields, require

TASKS = tuple(t.value for t in TaskType)
DEFAULT_SEEDS = tuple(range(1000, 1020))  # the registered held-out worlds
LOOPS = ("open", "closed")
BASELINES = ("heuristic", "random")
# The heuristic's action written as the agent's text answer (``Task.format_action``, expert
# iteration's teacher proposal), scored like any answer, for the tasks whose text the env reads
# through models (content_generation's post: the sentence embedding and VADER) instead of
# parsing it back to the action: there the text earns another reward than the structured
# action (+0.061 on the held-out twitter worlds, docs/results.md), and it is the fair reference
# for an agent that answers in text. Elsewhere it would equal the heuristic arm.
HEURISTIC_TEXT = "heuristic_text"
TEXT_READ_TASKS = ("content_generation",)
ANSWER_ARMS = ("agents", "sampled")
# Open loop: sample k of a world decodes with seed + SAMPLE_STRIDE * k, as
# ``task_episodes.evaluate_sampled`` does; closed loop: step i's samples, seed + SAMPLE_STRIDE * i.
SAMPLE_STRIDE = 7919

# (task, decoding spec, observations, seed) -> the full answers the env parses, one per
# observation; evaluate_run's comes from the task adapters, tests may script one.
Answerer = Callable[[str, TaskSpec, Sequence[str], int], list[str]]


@dataclass(frozen=True)
class ProtocolConfig:
    """What is evaluated and on which worlds (checked here; errors name the field).

    ``world``: further ``PlatformConfig`` options for ``oasis_v0.parallel_env``."""

    tasks: tuple[str, ...] = TASKS
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    steps: int = 8
    loop: str = "open"
    users: int = 1000
    recsys: str = "twitter"
    sampled: int = 0
    seed: int = 0
    world: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        set_ = _setter(self)
        set_("tasks", _task_values(self.tasks))
        set_("seeds", tuple(self.seeds) if not _is_int(self.seeds) else (self.seeds,))
        require(bool(self.seeds) and all(Int(0).accepts(s) for s in self.seeds), "seeds",
                self.seeds, "one or more integers >= 0")
        require(len(set(self.seeds)) == len(self.seeds), "seeds", self.seeds, "distinct seeds")
        set_("seeds", tuple(map(int, self.seeds)))  # numpy ints are not JSON
        # Python or numpy ints (Int's default), normalised to int.
        check_fields(self, {"steps": Int(1), "loop": OneOf(LOOPS), "users": Int(10),
                            "recsys": OneOf(RECOMMENDERS),
                            "sampled": Int(0, text="an integer >= 0 (0: no sampled arm)"),
                            "seed": Int(0)})
        unknown = sorted(set(self.world) - (PlatformConfig.field_names()
                                            - {"num_users", "recsys"}))
        require(not unknown, "world", dict(self.world),
                f"PlatformConfig options other than num_users and recsys ({unknown} unknown)")
        set_("world", dict(self.world))
        # The world's own checks, so a bad option fails before any model loads.
        PlatformConfig(num_users=self.users, **self.world_options())

    def world_options(self) -> dict[str, Any]:
        """The env options of every world (``num_users`` excluded: it is passed on its own)."""
        return {"recsys": self.recsys, **self.world}

    @property
    def arms(self) -> tuple[str, ...]:
        """The arms every task has."""
        return ("agents", *(("sampled",) if self.sampled else ()), *BASELINES)

    def arms_for(self, task: str) -> tuple[str, ...]:
        """The arms of ``task``: :attr:`arms`, and :data:`HEURISTIC_TEXT` where its text is read
        by models (:data:`TEXT_READ_TASKS`)."""
        return (*self.arms, *((HEURISTIC_TEXT,) if task in TEXT_READ_TASKS else ()))


def _setter(obj: Any) -> Callable[[str, Any], None]:
    """Normalise a field of a frozen dataclass inside its ``__post_init__``."""
    return lambda name, value: object.__setattr__(obj, name, value)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _task_values(tasks: Any) -> tuple[str, ...]:
    names = (tasks,) if isinstance(tasks, (str, TaskType)) else tuple(tasks)
    if any(str(getattr(n, "value", n)).strip().lower() == "all" for n in names):
        require(len(names) == 1, "tasks", names, "'all' alone, or task names")
        return TASKS
    require(bool(names), "tasks", names, f"'all' or one or more of {', '.join(TASKS)}")
    try:
        values = tuple(TaskType.parse(n).value for n in names)
    except ValueError:
        values = None
    require(values is not None, "tasks", names, f"'all' or one or more of {', '.join(TASKS)}")
    require(len(set(values)) == len(values), "tasks", names, "distinct tasks")
    return values


# ---------------------------------------------------------------------- results
@dataclass(frozen=True)
class Interval:
    """A mean with its 95% Student-t interval."""

    mean: float
    low: float
    high: float

    def as_dict(self) -> dict:
        return {"mean": self.mean, "ci95": [self.low, self.high]}


def paired_difference(values: Sequence[float], baseline: Sequence[float]) -> Interval:
    """Mean of ``values - baseline`` world by world, with a 95% Student-t interval (the
    interval of one world is the point itself)."""
    d = np.subtract(values, baseline, dtype=float)
    mean = float(np.mean(d))
    if len(d) < 2:
        return Interval(mean, mean, mean)
    half = float(stats.t.ppf(0.975, len(d) - 1) * np.std(d, ddof=1) / math.sqrt(len(d)))
    return Interval(mean, mean - half, mean + half)


def gap_closed(arm: float, heuristic: float, random: float) -> float | None:
    """The share of the random-to-heuristic gap ``arm`` closes (None when there is no gap)."""
    gap = heuristic - random
    return None if gap == 0 else float((arm - random) / gap)


@dataclass(frozen=True)
class ArmResult:
    """One arm of one task: its mean reward per step on each world (in the order of
    ``seeds``) and, for answer arms, the fraction of complete answers."""

    task: str
    arm: str
    seeds: tuple[int, ...]
    per_world: tuple[float, ...]
    parse_rate: float | None = None

    @property
    def mean(self) -> float:
        return float(np.mean(self.per_world))


@dataclass(frozen=True)
class ProtocolReport:
    """Every arm of every task under one config; ``adapters`` is a folder or "untrained"."""

    config: ProtocolConfig
    results: tuple[ArmResult, ...]
    adapters: str = "untrained"
    model: str = "embedded"

    def result(self, task: str, arm: str) -> ArmResult:
        """The result of ``arm`` for ``task`` (KeyError if it was not evaluated)."""
        for r in self.results:
            if r.task == task and r.arm == arm:
                return r
        raise KeyError(f"no arm {arm!r} for task {task!r}")

    def json_lines(self) -> list[dict]:
        """One JSON-serialisable dict per (task, arm)."""
        c = self.config
        meta = {"loop": c.loop, "steps": c.steps, "users": c.users, "recsys": c.recsys,
                "world": dict(c.world), "sampled": c.sampled, "sampling_seed": c.seed,
                "adapters": self.adapters, "model": self.model}
        return [{**self._line(r), **meta} for r in self.results]

    def _line(self, r: ArmResult) -> dict:
        heuristic, random = (self.result(r.task, b) for b in BASELINES)
        line = {"task": r.task, "arm": r.arm, "mean": r.mean, "seeds": list(r.seeds),
                "per_world": [float(v) for v in r.per_world], "parse_rate": r.parse_rate,
                "minus_heuristic": paired_difference(r.per_world, heuristic.per_world).as_dict(),
                "minus_random": paired_difference(r.per_world, random.per_world).as_dict(),
                "gap_closed": gap_closed(r.mean, heuristic.mean, random.mean)}
        if HEURISTIC_TEXT in self.config.arms_for(r.task):
            text = self.result(r.task, HEURISTIC_TEXT)
            line["minus_heuristic_text"] = paired_difference(r.per_world,
                                                             text.per_world).as_dict()
        return line

    def save(self, path: str | Path) -> Path:
        """Write the JSON lines to ``path`` (parent folders created)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(line) + "\n" for line in self.json_lines()))
        return path

    def table(self):
        """A rich Table, one row per task (see :func:`_table`)."""
        return _table(self)

    def print(self, console=None) -> None:
        """The table and, where a task has the :data:`HEURISTIC_TEXT` arm, its own table."""
        if console is None:
            console = Console()
        console.print(self.table())
        text = _text_table(self)
        if text is not None:
            console.print(text)


def _table(report: ProtocolReport):
    c = report.config
    table = Table(title=f"Held-out evaluation, {c.loop} loop: {report.adapters} adapters on "
                        f"{report.model}",
                  caption=f"mean reward per step over {len(c.seeds)} worlds (seeds "
                          f"{_seed_text(c.seeds)}), {c.steps} steps, {c.users} users, "
                          f"{c.recsys}. agents: greedy answers; heur.: heuristic; "
                          "differences paired by world, ± the 95% half-width; parse: complete "
                          "answers; gap closed: (agents - random) / (heur. - random)",
                  box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False)
    sampled = c.sampled > 0
    table.add_column("task", no_wrap=True, min_width=max(map(len, c.tasks)))
    # Short headers, explained in the caption, so the table fits an 80-column terminal.
    for col in ("agents", *(["sampled"] if sampled else []), "heur.", "random",
                "agents\n- heur.", "agents\n- random", "parse", "gap\nclosed"):
        table.add_column(col, justify="right")
    lines = report.json_lines()
    for task in c.tasks:
        line = {r["arm"]: r for r in lines if r["task"] == task}
        agents = line["agents"]
        gap = agents["gap_closed"]
        table.add_row(task, *(f"{line[a]['mean']:.3f}" for a in
                              ("agents", *(["sampled"] if sampled else []), *BASELINES)),
                      _interval_cell(agents["minus_heuristic"]),
                      _interval_cell(agents["minus_random"]), f"{agents['parse_rate']:.2f}",
                      "-" if gap is None else f"{gap:.2f}")
    return table


def _text_table(report: ProtocolReport):
    """The tasks with the :data:`HEURISTIC_TEXT` arm: it, and the agents against it (None when
    no task of the report has it); a table of its own, so the main one keeps 80 columns."""
    c = report.config
    tasks = [t for t in c.tasks if HEURISTIC_TEXT in c.arms_for(t)]
    if not tasks:
        return None
    table = Table(title="The heuristic's action written as the agent's text answer (the env "
                        "reads the text through models, so it earns another reward)",
                  caption="differences paired by world, ± the 95% half-width",
                  box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False)
    for col, justify in (("task", "left"), ("heur. text", "right"),
                         ("heur. text\n- heur.", "right"), ("agents\n- heur. text", "right")):
        table.add_column(col, justify=justify, no_wrap=col == "task")
    lines = report.json_lines()
    for task in tasks:
        line = {r["arm"]: r for r in lines if r["task"] == task}
        text = line[HEURISTIC_TEXT]
        table.add_row(task, f"{text['mean']:.3f}", _interval_cell(text["minus_heuristic"]),
                      _interval_cell(line["agents"]["minus_heuristic_text"]))
    return table


def _interval_cell(d: dict) -> str:
    # The Student-t interval is symmetric: mean over half-width, so the table stays narrow.
    lo, hi = d["ci95"]
    return f"{d['mean']:+.3f}\n±{(hi - lo) / 2:.3f}"


def _seed_text(seeds: Sequence[int]) -> str:
    s = list(seeds)
    if s == list(range(s[0], s[0] + len(s))) and len(s) > 2:
        return f"{s[0]}-{s[-1]}"
    return ", ".join(map(str, s))


# ---------------------------------------------------------------------- playing worlds
@dataclass
class WorldRun:
    """One world of one task: the steps played (snapshots and baselines), each arm's reward
    per scored answer or action, whether each answer parsed completely, the greedy answers."""

    episode: TaskEpisode
    rewards: dict[str, list[float]] = field(default_factory=dict)
    parsed: dict[str, list[bool]] = field(default_factory=dict)
    answers: list[str] = field(default_factory=list)

    def add(self, arm: str, reward: float, parsed: bool | None = None) -> None:
        self.rewards.setdefault(arm, []).append(float(reward))
        if parsed is not None:
            self.parsed.setdefault(arm, []).append(bool(parsed))

    def score_baselines(self) -> None:
        """Score the heuristic and random actions of every step on its snapshot, and the
        heuristic's text answer where the env reads text through models."""
        text = self.episode.task.value in TEXT_READ_TASKS
        for i, step in enumerate(self.episode.steps):
            for kind in BASELINES:
                self.add(kind, self.episode.score_action(i, step.baselines[kind]))
            if text:
                self.add(HEURISTIC_TEXT, self.episode.score(i, self.episode.heuristic_answer(i)))


def _with_answer(others: dict, task: str, answer: str) -> dict:
    action = env_action(answer)
    return others if action is None else {**others, task: action}


def _complete(episode: TaskEpisode, answer: str) -> bool:
    """Whether the env's parser reads the text the env receives as a complete answer."""
    task = episode.scorer.scratch.tasks[episode.task.value]
    action = env_action(answer)
    return action is not None and task.parse(action).complete


def play_open(task: str, seed: int, config: ProtocolConfig, answer: Answerer) -> WorldRun:
    """Open loop: :func:`collect_episode`'s world; all of a world's steps decoded in a batch."""
    episode = collect_episode(task, seed, config.steps, config.users, **config.world_options())
    run = WorldRun(episode)
    observations = [s.observation for s in episode.steps]
    run.answers = answer(task, greedy(spec(task)), observations, config.seed)
    for i, text in enumerate(run.answers):
        run.add("agents", episode.score(i, text), _complete(episode, text))
    for k in range(config.sampled):
        texts = answer(task, as_trained(spec(task)), observations,
                       config.seed + SAMPLE_STRIDE * k)
        for i, text in enumerate(texts):
            run.add("sampled", episode.score(i, text), _complete(episode, text))
    run.score_baselines()
    return run


def play_closed(task: str, seed: int, config: ProtocolConfig, answer: Answerer) -> WorldRun:
    """Closed loop: the env plays the agent's greedy answer for ``task`` at every step."""
    env = oasis_v0.parallel_env(num_users=config.users, max_cycles=config.steps,
                                obs_mode="text", text_agents=[task], **config.world_options())
    env.reset(seed=seed)
    # The same random-baseline draws as collect_episode's, so both loops share them.
    space = copy.deepcopy(env.tasks[task].action_space)
    space.seed(seed)
    run = WorldRun(TaskEpisode(TaskType.parse(task), seed, [], Counterfactual(env)))
    greedy_spec, sampled_spec = greedy(spec(task)), as_trained(spec(task))
    while env.agents:
        i = len(run.episode.steps)
        step = _observe(env, task, space)
        run.episode.steps.append(step)
        text = answer(task, greedy_spec, [step.observation], config.seed + i)[0]
        run.answers.append(text)
        _, rewards, _, _, _ = env.step(_with_answer(step.others, task, text))
        run.add("agents", rewards[task], _complete(run.episode, text))
        if config.sampled:
            for s in answer(task, sampled_spec, [step.observation] * config.sampled,
                            config.seed + SAMPLE_STRIDE * i):
                run.add("sampled", run.episode.score(i, s), _complete(run.episode, s))
    run.score_baselines()
    return run


def _observe(env, task: str, space) -> TaskStep:
    """The step about to be played, as :func:`collect_episode` records it (same order of
    draws): the other roles' heuristic actions, the task's baselines, its prompt, a snapshot."""
    others = {a: heuristic_action(a, env.vector_observation(a)) for a in env.agents if a != task}
    baselines = {"heuristic": heuristic_action(task, env.vector_observation(task)),
                 "random": space.sample()}
    return TaskStep(env.text_observation(task), snapshot(env), others, baselines)


# ---------------------------------------------------------------------- entry points
@dataclass(frozen=True)
class WorldScore:
    """One (task, world): each arm's mean reward over the world's steps and, for the answer
    arms, whether each answer parsed completely (what a report keeps of a :class:`WorldRun`)."""

    task: str
    seed: int
    means: dict[str, float]
    parsed: dict[str, list[bool]]


def score_world(task: str, seed: int, config: ProtocolConfig, answer: Answerer) -> WorldScore:
    """Play one world of ``task`` by ``config``'s loop and score every arm; a world depends
    only on its task, seed and ``config``, so worlds may be played anywhere in any order."""
    play = play_open if config.loop == "open" else play_closed
    run = play(task, seed, config, answer)
    return WorldScore(task, seed, {arm: float(np.mean(run.rewards[arm]))
                                   for arm in config.arms_for(task)},
                      {arm: run.parsed.get(arm, []) for arm in ANSWER_ARMS})


def worlds(config: ProtocolConfig) -> list[tuple[str, int]]:
    """Every (task, seed) of ``config``, in the order a report lists them."""
    return [(task, seed) for task in config.tasks for seed in config.seeds]


def report_from(config: ProtocolConfig, scores: Sequence[WorldScore], adapters: str = "untrained",
                model: str = "embedded") -> ProtocolReport:
    """The report of ``scores`` (one per :func:`worlds` entry, in that order)."""
    require([(s.task, s.seed) for s in scores] == worlds(config), "scores",
            f"{len(scores)} world scores", "one per (task, seed) of the config, in order")
    results = []
    for task in config.tasks:
        mine = [s for s in scores if s.task == task]
        for arm in config.arms_for(task):
            parse = None
            if arm in ANSWER_ARMS:
                flags = [f for s in mine for f in s.parsed[arm]]
                parse = float(np.mean(flags))
            results.append(ArmResult(task, arm, config.seeds,
                                     tuple(s.means[arm] for s in mine), parse))
    return ProtocolReport(config, tuple(results), adapters, model)


def run_protocol(config: ProtocolConfig, answer: Answerer, adapters: str = "untrained",
                 model: str = "embedded") -> ProtocolReport:
    """Play every (task, seed) world of ``config`` and score every arm; ``answer`` writes the
    agents' answers (``adapters`` and ``model`` only label the report)."""
    # Kept one world at a time: a world's snapshots are dropped before the next is played.
    return report_from(config, [score_world(task, seed, config, answer)
                                for task, seed in worlds(config)], adapters, model)


def adapter_answerer(adapters, untrained: bool = False, adapter: str | None = None,
                     cache_factory: Callable[[], Any] | None = None) -> Answerer:
    """An :data:`Answerer` decoding with ``adapters`` (a ``TaskAdapters``), through ``adapter``
    (default the adapter named after the task; ``untrained``: through no adapter, i.e. the
    base model, which is what PEFT's fresh adapter computes since its B is 0), all
    observations of a call in one batch, into caches ``cache_factory`` makes (default plain).
    Each task's system turn is computed once per adapter weights (a prefix cache in memory),
    not once per prompt."""
    require(not (untrained and adapter), "adapter", adapter, "None when untrained")
    store = PrefixCacheStore(adapters.model, persist=False)

    def answer(task: str, task_spec: TaskSpec, observations: Sequence[str],
               seed: int) -> list[str]:
        name = None if untrained else (adapter or task)
        requests = [task_spec.request(adapters.tokenizer, o, name) for o in observations]
        outs = generate_batch(adapters.model, adapters.tokenizer, requests, cache_factory,
                              seed=seed, multi_adapter=True, prefix_caches=store)
        return [task_spec.answer(o, out.text) for o, out in zip(observations, outs)]
    return answer


def check_adapters(directory: str | Path, tasks: Sequence[str]) -> Path:
    """The folder of saved adapters; FileNotFoundError naming the task and folder when one of
    ``tasks`` has no saved adapter there (checked before any model loads)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"no adapters folder {directory}")
    for task in tasks:
        if not (directory / task / "adapter_config.json").is_file():
            raise FileNotFoundError(f"no saved adapter for task {task!r} in {directory} "
                                    f"(expected {directory / task}/adapter_config.json)")
    return directory


def evaluate_run(config: ProtocolConfig, adapters: str | Path | None,
                 model: str = "embedded") -> ProtocolReport:
    """The protocol for the task adapters saved in ``adapters`` (``TaskAdapters.save``'s
    folder, one sub-folder per task) or, with ``None``, for PEFT's fresh adapters (B = 0: the
    base model itself), on ``model``."""
    folder = None if adapters is None else check_adapters(adapters, config.tasks)
    return run_protocol(config, adapter_answerer(load_task_adapters(config, folder, model)),
                        "untrained" if folder is None else str(folder), model)


def load_task_adapters(config: ProtocolConfig, folder: Path | None, model: str) -> TaskAdapters:
    """``config``'s task adapters on ``model``: loaded from ``folder``, or fresh (None)."""
    loaded = TaskAdapters(load_model(model), list(config.tasks), LoraSettings(), config.seed)
    if folder is not None:
        loaded.load(folder, list(config.tasks))
    return loaded


def comparison_table(trained: ProtocolReport, untrained: ProtocolReport):
    """A rich Table of the trained minus the untrained agents' greedy reward per task, paired
    by world (both reports must cover the same tasks and seeds)."""
    table = Table(title="trained - untrained agents (greedy), paired by held-out world")
    for col in ("task", "untrained", "trained", "difference [95% interval]", "parse untrained",
                "parse trained"):
        table.add_column(col, justify="left" if col == "task" else "right")
    for task in trained.config.tasks:
        after, before = trained.result(task, "agents"), untrained.result(task, "agents")
        if after.seeds != before.seeds:
            raise ValueError(f"{task}: the reports cover different seeds")
        d = paired_difference(after.per_world, before.per_world)
        table.add_row(task, f"{before.mean:.3f}", f"{after.mean:.3f}",
                      f"{d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}]",
                      f"{before.parse_rate:.2f}", f"{after.parse_rate:.2f}")
    return table
