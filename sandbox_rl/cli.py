"""The ``sandbox-rl`` command line.

``sandbox-rl simulate --users N --steps S [--recsys twitter|reddit|random] [--trace FILE]
[--overwrite] [--no-tweets] [--seed K] [--quiet]`` runs the PettingZoo env with every role
played by its heuristic policy and prints the network statistics, rewards and throughput.

``sandbox-rl train sb3|supersuit|rllib [--timesteps N] [--seed K] [--out DIR] ...`` trains a
PPO policy (SB3 on one role, one SB3 policy shared by the five agents via SuperSuit, or RLlib
with one module per agent). ``sandbox-rl train agents [--tasks all|T1 T2 ...] [--minutes M]
[--out DIR] ...`` trains the task LoRA adapters by expert iteration with the world as verifier,
then TRL PPO; ``sandbox-rl train llm-ppo [--tasks T1 T2 ...] [--updates N] [--out DIR] ...`` trains
them by TRL PPO on env rewards. Each ``train`` command runs an entry point of
``sandbox_rl.training``; its flags are the fields of the entry point's config dataclass, and it
ends with the held-out evaluation table (for ``agents`` and ``llm-ppo``: trained and untrained
adapters by the protocol of ``evaluate``).

``sandbox-rl evolve [--steps N] [--strategy S] [--model NAME] [--adapters RUN] [--out DIR]
[--overwrite] ...`` runs the self-evolving sandbox (the main job; ``make run`` is ``evolve --steps
10 --seed 0 --out runs/latest --overwrite``): the five LLM task agents act in the world and
evolve by the chosen strategy, and the run folder gets the logs, the saved state, the plots and
``summary.json``.

``sandbox-rl evaluate --adapters DIR|untrained [--tasks all|T1 T2 ...] [--seeds 1000-1019]
[--steps N] [--loop open|closed] [--users N] [--recsys R] [--sampled K] [--model NAME]
[--threads N] [--ray-address A --workers N] [--json] [--out FILE]`` runs the held-out
evaluation protocol of ``sandbox_rl.training.protocol``, the one every figure uses: per task and
world seed, the adapters' greedy answers (and, with ``--sampled K``, K sampled ones), the
heuristic and a random action are scored on the same env steps (open loop: the measured task's
no-op world; closed loop: the world the agent's answers drive). It prints a table (on stderr
with ``--json``, which prints one JSON line per task and arm on stdout); ``--out`` saves the
lines. ``--ray-address`` plays the worlds on Ray workers (as ``train agents --ray-address``
proposes and scores there, and ``train rllib --address`` samples there).

``sandbox-rl evolve --checkpoint-every N`` keeps checkpoints of a long run; Ctrl-C during
``evolve`` or ``train agents|llm-ppo`` saves what is finished and exits with status 130 and one
line saying how to go on: ``--resume RUN``, which keeps the run's settings (a flag naming
another value is refused, naming it) and continues where it stopped.

The env, the policies and rich are imported inside the command, and a trainer's module (or the
evolve run's) when the command runs it (:class:`Trainer`); the flags come from config dataclasses
and ``--resume`` is checked by light modules, so ``--help`` and argument errors answer at once.
Bad user input is one line naming the flag, with exit status 2, whichever layer finds it:
argparse, a config's checks, the env's (``invalid num_users=10`` is reported as ``argument
--users``) or the file system (an unwritable ``--trace``, an ``--out`` that is a file);
``_user_input`` is the one place that turns such errors into usage errors. Every layer checks
with ``sandbox_rl.validation``, whose errors carry the field as data (``err.field``), so the flag
is looked up, never read back from the message.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path
from typing import NoReturn

from sandbox_rl.allocator import keep_freed_memory
# The configs and the --resume checks of evolve and the trainers: light modules (no torch).
from sandbox_rl.core.run_config import EvolveRunConfig, resume_config
from sandbox_rl.enums import EvolutionStrategy, TaskType
from sandbox_rl.envs.config import RECOMMENDERS
from sandbox_rl.training import agents_resume, llm_ppo_resume
from sandbox_rl.training.common import (ExtraMissingError, add_config_arguments, config_from_args,
                                        flag_of)
from sandbox_rl.training.configs import (TASKS, VEC_ENVS, AgentsConfig, LLMPPOConfig, RLlibConfig,
                                         SB3Config, SharedPolicyConfig)
from sandbox_rl.training.ray_runtime import DEFAULT_WORKERS
from sandbox_rl.validation import InvalidInput, InvalidPath

USAGE_ERROR = 2  # the exit status argparse uses for bad arguments
INTERRUPTED = 130  # the shell's status for a command stopped by Ctrl-C (128 + SIGINT)

# Options of the env and the sandbox that a command sets from a flag of another name, so that an
# error about the option names the flag the user typed.
_SIMULATE_FLAGS = {"num_users": "--users", "recsys": "--recsys", "max_cycles": "--steps",
                   "trace_path": "--trace", "trace_overwrite": "--overwrite",
                   "attach_tweets": "--no-tweets", "seed": "--seed"}
_EVOLVE_FLAGS = {"num_users": "--users", "model_pool_size": "--pool-size",
                 "evolution_strategy": "--strategy", "enable_online_adaptation":
                 "--online-adaptation", "adapters_dir": "--adapters", "log_dir": "--out",
                 "task_distribution": "--model", "fallback_model": "--model"}


class _UsageError(Exception):
    """Bad user input: ``main`` prints it as one line naming the flag and exits with status 2."""


@contextmanager
def _user_input(flags: Mapping[str, str], by_type: Mapping[type, str] | None = None,
                fallback: bool = True) -> Iterator[None]:
    """Turn a ValueError, TypeError or OSError raised inside into a :class:`_UsageError` naming
    the flag: the one of the option the error names (``InvalidInput.field``; ``flags``: option
    -> flag), else the one of the error's type (``by_type``). Without either, ``fallback``
    decides: a usage error without a flag, or the error as raised (it is not about the user's
    input)."""
    try:
        yield
    except (ValueError, TypeError, OSError) as err:
        message = _naming_flag(err, flags, by_type or {})
        if message is None and not fallback:
            raise
        raise _UsageError(message or str(err)) from err


def _naming_flag(err: Exception, flags: Mapping[str, str],
                 by_type: Mapping[type, str]) -> str | None:
    # An error in its own words (``reason`` None) is not rephrased: it falls to its type.
    if isinstance(err, InvalidInput) and err.reason is not None and err.field in flags:
        return f"argument {flags[err.field]}: invalid value {err.quoted}: {err.reason}"
    for kind, flag in by_type.items():
        if isinstance(err, kind):
            return f"argument {flag}: {err}"
    return None


def _config_flags(config_cls: type, **renamed: str) -> dict[str, str]:
    """Every field of a config dataclass -> its flag, plus options the command renames."""
    return {**{f.name: flag_of(f.name) for f in fields(config_cls)}, **renamed}


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line: ``prog: error: ...``."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _integer(low: int | None = None):
    """An argparse type for integers; bounds the world checks itself are left to the world."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if low is not None and value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sandbox-rl", description="Self-Evolving Oasis command line.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     parser_class=_Parser)
    sim = commands.add_parser("simulate", help="run the world with the heuristic policies",
                              description="Run the world with all five roles played by the "
                                          "heuristic policies and print a summary.")
    sim.add_argument("--users", type=_integer(), default=1000,
                     help="simulated users (default 1000)")
    sim.add_argument("--steps", type=_integer(), default=24,
                     help="steps, one simulated hour each (default 24)")
    sim.add_argument("--recsys", choices=RECOMMENDERS, default="twitter",
                     help="feed recommender (default twitter)")
    sim.add_argument("--trace", metavar="FILE", default=None,
                     help="write a SQLite trace of the run to FILE (an existing trace is kept "
                          "unless --overwrite)")
    sim.add_argument("--overwrite", action="store_true",
                     help="replace an existing trace at --trace FILE")
    sim.add_argument("--no-tweets", dest="tweets", action="store_false",
                     help="do not give simulated posts real tweet text from the corpus")
    sim.add_argument("--seed", type=_integer(0), default=0, help="random seed (default 0)")
    sim.add_argument("--quiet", action="store_true", help="hide the progress bar")
    sim.set_defaults(run=simulate, cli_prog=sim.prog)
    _add_train(commands)
    _add_evolve(commands)
    _add_evaluate(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.cli_argv = argv
    keep_freed_memory()  # several times faster decoding on CPU (sandbox_rl/allocator.py)
    try:
        return args.run(args)
    except _UsageError as err:
        message = " ".join(str(err).split())  # one line, whatever the error held
        print(f"{args.cli_prog}: error: {message} (see {args.cli_prog} --help)", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt as err:  # RunInterrupted says what was saved and how to resume
        message = " ".join(str(err).split()) or "interrupted"
        print(f"{args.cli_prog}: {message}", file=sys.stderr)
        return INTERRUPTED


def _given_flags(config_cls: type, args: argparse.Namespace) -> set[str] | None:
    """The fields of ``config_cls`` whose flags the command line named, whatever their values
    (a resumed run keeps its own settings for the others); None when it is not known."""
    argv = getattr(args, "cli_argv", None)
    if argv is None:
        return None
    words = 2 if args.command == "train" else 1  # "evolve ..." / "train agents ..."
    probe = _Parser(add_help=False)
    add_config_arguments(probe, config_cls)
    for action in probe._actions:
        action.default = argparse.SUPPRESS
    return set(vars(probe.parse_known_args(argv[words:])[0]))


# ---------------------------------------------------------------------- simulate
@dataclass
class _RunResult:
    stats: dict
    mean_reward: dict[str, float]
    steps: int
    setup_s: float
    wall_s: float
    trace_counts: dict[str, int] | None = None


def simulate(args: argparse.Namespace) -> int:
    """The ``simulate`` command; returns the exit status."""
    from sandbox_rl.envs import oasis_v0  # on use: --help and argument errors answer at once

    start = time.perf_counter()
    with _user_input(_SIMULATE_FLAGS):
        env = oasis_v0.parallel_env(num_users=args.users, recsys=args.recsys,
                                    max_cycles=args.steps, trace_path=args.trace,
                                    trace_overwrite=args.overwrite, attach_tweets=args.tweets)
        # reset() builds the world and opens the trace, which refuses a file that is not ours
        # or a place it cannot write.
        observations, _ = env.reset(seed=args.seed)
    try:
        result = _play(env, observations, args, time.perf_counter() - start)
    finally:
        env.close()
    if args.trace is not None:
        from sandbox_rl.envs.trace import trace_counts  # on use, as the env (sqlite3)

        result.trace_counts = trace_counts(args.trace)
    _print_summary(result, args)
    return 0


def _play(env, observations: dict, args: argparse.Namespace, setup_s: float) -> _RunResult:
    from sandbox_rl.envs.heuristics import HeuristicPolicy  # on use, as the env (simulate)

    policy = HeuristicPolicy(env)
    totals = dict.fromkeys(env.possible_agents, 0.0)
    steps = 0
    start = time.perf_counter()
    with _progress(args.steps, args.quiet) as advance:
        while env.agents:
            observations, rewards, _, _, _ = env.step(policy(observations))
            for agent, reward in rewards.items():
                totals[agent] += float(reward)
            steps += 1
            advance()
    wall_s = time.perf_counter() - start
    mean = {a: r / max(steps, 1) for a, r in totals.items()}
    return _RunResult(env.platform.stats().as_dict(), mean, steps, setup_s, wall_s)


@contextmanager
def _progress(total: int, quiet: bool) -> Iterator[Callable[[], None]]:
    """A rich progress bar over steps (nothing when quiet); yields a function that advances it."""
    if quiet:
        yield lambda: None
        return
    # rich on use: --help and argument errors answer at once.
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeRemainingColumn)

    # On stderr, so that stdout carries only the summary.
    with Progress(TextColumn("simulating"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), transient=True, console=_console(stderr=True)) as bar:
        task = bar.add_task("steps", total=total)
        yield lambda: bar.advance(task)


def _console(stderr: bool = False):
    from rich.console import Console  # rich on use: --help and argument errors answer at once

    return Console(stderr=stderr)


def _print_summary(result: _RunResult, args: argparse.Namespace) -> None:
    from rich.table import Table  # rich on use: --help and argument errors answer at once

    console = _console()
    stats = Table(title=f"Network after {result.steps} steps", show_header=False)
    for key, value in result.stats.items():
        stats.add_row(key, _fmt(value))
    console.print(stats)
    rewards = Table(title="Mean reward per step")
    rewards.add_column("agent")
    rewards.add_column("mean reward", justify="right")
    for agent, mean in result.mean_reward.items():
        rewards.add_row(agent, f"{mean:.4f}")
    console.print(rewards)
    user_steps = args.users * result.steps / max(result.wall_s, 1e-9)
    console.print(f"setup {result.setup_s:.2f} s, {result.steps} steps in {result.wall_s:.2f} s "
                  f"({user_steps:,.0f} user-steps/s)")
    if result.trace_counts is not None:
        trace = Table(title="Trace rows", caption=str(args.trace))
        trace.add_column("table")
        trace.add_column("rows", justify="right")
        for table, rows in result.trace_counts.items():
            trace.add_row(table, f"{rows:,}")
        console.print(trace)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) or "-"
    return str(value)


# ---------------------------------------------------------------------- evolve
def _add_evolve(commands) -> None:
    evolve = commands.add_parser(
        "evolve", help="run a self-evolving simulation (LLM agents) into a run folder",
        description="Run the self-evolving sandbox: five LLM task agents act in the world, "
                    "evolve by the chosen strategy, and the run folder gets metrics, the saved "
                    "state, plots and a summary.")
    add_config_arguments(evolve, EvolveRunConfig,
                         {"strategy": tuple(s.value for s in EvolutionStrategy)})
    evolve.set_defaults(run=run_evolve, cli_prog=evolve.prog)


def run_evolve(args: argparse.Namespace) -> int:
    # agents.models (tokenizers, the corpus) on use: --help answers at once.
    from sandbox_rl.agents.models import ModelNotAvailableError

    flags = _config_flags(EvolveRunConfig, **_EVOLVE_FLAGS)
    with _user_input(flags):
        config = config_from_args(EvolveRunConfig, args)
        if config.resume is not None:  # checked, and the run's settings taken, before anything
            config = resume_config(config, _given_flags(EvolveRunConfig, args))
        _check_out_folder(config.out)
    # The run (torch, the model stack) once the arguments are checked: their errors answer at once.
    from sandbox_rl.core.run import run_evolution

    try:
        # The sandbox checks its own config (users, pool size, ...) before any model loads.
        with _user_input(flags, {ModelNotAvailableError: "--model"}, fallback=False):
            run_evolution(config)
    except (FileExistsError, ValueError) as err:  # a run folder kept, or a failure of the run
        print(f"{args.cli_prog}: error: {err}", file=sys.stderr)
        return 1
    return 0


def _check_out_folder(path: str) -> None:
    """A run folder must be a folder, or a path a folder can be made at."""
    out = Path(path)
    existing = next(p for p in (out, *out.parents) if p.exists() or p == p.parent)
    if existing.exists() and not existing.is_dir():
        what = "is a file" if existing == out else f"is under {str(existing)!r}, a file"
        raise InvalidPath("out", str(out), f"a folder; it {what}")


# ---------------------------------------------------------------------- evaluate
def seed_list(text: str) -> list[int]:
    """An argparse type for ``--seeds`` items: ``N``, ``A-B`` (inclusive) or comma lists."""
    seeds = []
    for part in filter(None, text.split(",")):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match or (match.group(2) and int(match.group(2)) < int(match.group(1))):
            raise argparse.ArgumentTypeError(
                f"expected seeds >= 0 as N, A-B (A <= B) or a comma list, got {text!r}")
        low = int(match.group(1))
        seeds += range(low, int(match.group(2) or low) + 1)
    if not seeds:
        raise argparse.ArgumentTypeError(f"expected one or more seeds, got {text!r}")
    return seeds


def _add_evaluate(commands) -> None:
    # The choices from sandbox_rl.enums, not training.protocol: it imports torch, and --help
    # must answer at once.
    tasks, loops = tuple(t.value for t in TaskType), ("open", "closed")

    ev = commands.add_parser(
        "evaluate", help="score task adapters on the held-out worlds (the protocol of every "
                         "figure)",
        description="Score the task adapters' greedy answers next to the heuristic and random "
                    "actions on the same steps of the held-out worlds; print a table, or JSON "
                    "lines with --json.")
    ev.add_argument("--adapters", required=True, metavar="DIR|untrained",
                    help="folder of saved task adapters (one sub-folder per task, PEFT format),"
                         " or 'untrained' for fresh adapters (the base model)")
    ev.add_argument("--tasks", nargs="+", choices=("all", *tasks), default=["all"],
                    metavar="TASK", help="'all' or task names (default all)")
    ev.add_argument("--seeds", nargs="+", type=seed_list, default=[list(range(1000, 1020))],
                    metavar="SEEDS", help="world seeds: N, A-B or lists (default 1000-1019, "
                                          "the held-out set)")
    ev.add_argument("--steps", type=_integer(1), default=8, help="env steps per world "
                                                                 "(default 8)")
    ev.add_argument("--loop", choices=loops, default="open",
                    help="open: the task does its no-op in the world; closed: its answers "
                         "drive the world (default open)")
    ev.add_argument("--users", type=_integer(10), default=1000,
                    help="simulated users (default 1000)")
    ev.add_argument("--recsys", choices=RECOMMENDERS, default="twitter",
                    help="feed recommender (default twitter)")
    ev.add_argument("--sampled", type=_integer(0), default=0, metavar="K",
                    help="also score K answers per step sampled as in training (default 0)")
    ev.add_argument("--seed", type=_integer(0), default=0, help="sampling seed (default 0)")
    ev.add_argument("--model", default="embedded", help="base model (default embedded)")
    ev.add_argument("--threads", type=_integer(1), default=2,
                    help="torch CPU threads (default 2; with --ray-address, of each worker)")
    ev.add_argument("--ray-address", metavar="auto|HOST:PORT|local", default=None,
                    help="play the worlds on Ray: the cluster at this address, or 'local' "
                         "(a Ray on this machine); the report equals the serial one (extra "
                         "rllib)")
    ev.add_argument("--workers", type=_integer(1), default=None,
                    help="Ray actors playing worlds, each with the model loaded and --threads "
                         "CPUs (default 2; only with --ray-address)")
    ev.add_argument("--json", action="store_true",
                    help="print one JSON line per task and arm on stdout (table on stderr)")
    ev.add_argument("--out", metavar="FILE", default=None, help="save the JSON lines to FILE")
    ev.set_defaults(run=run_evaluate, cli_prog=ev.prog)


def run_evaluate(args: argparse.Namespace) -> int:
    """The ``evaluate`` command: build the config, run the protocol, print and save."""
    # The protocol (torch, transformers) on use: --help and argument errors answer at once.
    import torch

    from sandbox_rl.agents.models import ModelNotAvailableError
    from sandbox_rl.training.protocol import ProtocolConfig, check_adapters, evaluate_run

    if args.workers is not None and args.ray_address is None:
        raise _UsageError("argument --workers: only with --ray-address (the serial run plays "
                          "the worlds in this process)")
    if args.ray_address is not None and not args.ray_address.strip():
        raise _UsageError("argument --ray-address: expected auto, HOST:PORT or local")
    flags = _config_flags(ProtocolConfig, num_users="--users", ray_address="--ray-address",
                          workers="--workers")
    with _user_input(flags):
        config = ProtocolConfig(tasks=tuple(args.tasks),
                                seeds=tuple(s for part in args.seeds for s in part),
                                steps=args.steps, loop=args.loop, users=args.users,
                                recsys=args.recsys, sampled=args.sampled, seed=args.seed)
    adapters = None if args.adapters == "untrained" else args.adapters
    with _user_input(flags, {FileNotFoundError: "--adapters", ModelNotAvailableError: "--model"},
                     fallback=False):
        if adapters is not None:
            check_adapters(adapters, config.tasks)  # before the model loads: fail at once
        try:
            torch.set_num_threads(args.threads)
            if args.ray_address is None:
                report = evaluate_run(config, adapters, args.model)
            else:
                report = _evaluate_on_ray(config, adapters, args)
        except ExtraMissingError as err:  # --ray-address without the rllib extra (Ray)
            print(f"{args.cli_prog}: error: {err}", file=sys.stderr)
            return 1
    report.print(_console(stderr=args.json))
    if args.json:
        for line in report.json_lines():
            print(json.dumps(line))
    if args.out is not None:
        report.save(args.out)
    return 0


def _evaluate_on_ray(config, adapters: str | None, args: argparse.Namespace):
    # Ray (the optional rllib extra; ray_session checks it) and torch on use.
    from sandbox_rl.training.protocol_ray import evaluate_run_on_ray

    return evaluate_run_on_ray(config, adapters, args.model, args.ray_address,
                               args.workers or DEFAULT_WORKERS, args.threads)


# ---------------------------------------------------------------------- train
@dataclass(frozen=True)
class Trainer:
    """A ``sandbox-rl train`` entry point: its config dataclass and the module whose ``train``
    (config -> result) and ``report`` (result, console) run it, imported when the command runs
    (torch and the model stack: ``--help`` and argument errors must not wait for them)."""

    config: type
    module: str
    help: str
    choices: dict[str, tuple] | None = None
    resume: Callable | None = None  # (config, given flags) -> the config a --resume continues

    def load(self):
        return importlib.import_module(self.module)


def trainers() -> dict[str, Trainer]:
    """The train subcommands; one entry per entry point."""
    return {
        "sb3": Trainer(SB3Config, "sandbox_rl.training.sb3",
                       "SB3 PPO on one role of SelfEvolvingOasis-v0 (extra sb3)",
                       {"task": TASKS, "vec_env": VEC_ENVS}),
        "supersuit": Trainer(SharedPolicyConfig, "sandbox_rl.training.shared_policy",
                             "one SB3 PPO policy shared by all five agents, via SuperSuit "
                             "(extra sb3)"),
        "rllib": Trainer(RLlibConfig, "sandbox_rl.training.rllib",
                         "RLlib multi-agent PPO, one module per agent (extra rllib)"),
        "agents": Trainer(AgentsConfig, "sandbox_rl.training.agents_trainer",
                          "expert iteration with the world as verifier, then TRL PPO, on the "
                          "task LoRA adapters; trained vs untrained on held-out worlds",
                          resume=agents_resume.resume_config),
        "llm-ppo": Trainer(LLMPPOConfig, "sandbox_rl.training.llm_ppo",
                           "TRL PPO on the task LoRA adapters, scored by the env; trained vs "
                           "untrained on held-out worlds", resume=llm_ppo_resume.resume_config),
    }


def _add_train(commands) -> None:
    train = commands.add_parser("train", help="train a policy and evaluate it on held-out worlds",
                                description="Train a policy, then print its held-out reward "
                                            "next to the random and heuristic baselines.")
    kinds = train.add_subparsers(dest="trainer", required=True, metavar="TRAINER",
                                 parser_class=_Parser)
    for name, trainer in trainers().items():
        sub = kinds.add_parser(name, help=trainer.help, description=trainer.help)
        add_config_arguments(sub, trainer.config, trainer.choices)
        sub.set_defaults(run=partial(run_training, name, trainer), cli_prog=sub.prog)


def run_training(name: str, trainer: Trainer, args: argparse.Namespace) -> int:
    """The ``train NAME`` command: build the config, train, print the evaluation table."""
    flags = _config_flags(trainer.config, num_users="--users")
    with _user_input(flags):
        config = config_from_args(trainer.config, args)
        if trainer.resume is not None and config.resume is not None:
            # checked, and the run's settings taken, before anything is loaded or written
            config = trainer.resume(config, _given_flags(trainer.config, args))
    try:
        with _user_input(flags, fallback=False):  # the env's own checks of the flags' values
            module = trainer.load()
            result = module.train(config)
    except (ExtraMissingError, FileExistsError) as err:
        print(f"{args.cli_prog}: error: {err}", file=sys.stderr)
        return 1
    module.report(result, _console())
    return 0
