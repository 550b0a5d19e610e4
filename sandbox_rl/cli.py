"""The ``sandbox-rl`` command line.

``sandbox-rl simulate --users N --steps S [--recsys twitter|reddit|random] [--trace FILE]
[--seed K] [--quiet]`` runs the PettingZoo env with every role played by its heuristic policy
and prints the network statistics, rewards and throughput.

``sandbox-rl train sb3|supersuit|rllib [--timesteps N] [--seed K] [--out DIR] ...`` runs a
training entry point of ``sandbox_rl.training``; its flags are the fields of the entry point's
config dataclass, and it ends with the held-out evaluation table.

The env, the policies and rich are imported inside the command, so ``--help`` and argument
errors answer at once.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import NoReturn

from sandbox_rl.envs.config import RECOMMENDERS

USAGE_ERROR = 2  # the exit status argparse uses for bad arguments

# World options that the CLI names differently, so errors can point at the flag the user typed.
_FLAG_OF_OPTION = {"num_users": "--users", "recsys": "--recsys", "max_cycles": "--steps"}
_INVALID = re.compile(r"invalid (\w+)=(.*?): expected (.*)")


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
    sim.set_defaults(run=simulate)
    _add_train(commands)
    _add_evolve(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


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
    from sandbox_rl.envs import oasis_v0

    start = time.perf_counter()
    try:
        env = oasis_v0.parallel_env(num_users=args.users, recsys=args.recsys,
                                    max_cycles=args.steps, trace_path=args.trace,
                                    trace_overwrite=args.overwrite, attach_tweets=args.tweets)
        # reset() builds the world and opens the trace, which refuses a file that is not ours.
        observations, _ = env.reset(seed=args.seed)
    except (ValueError, FileNotFoundError) as err:
        return _usage_error("sandbox-rl simulate", err)
    try:
        result = _play(env, observations, args, time.perf_counter() - start)
    finally:
        env.close()
    if args.trace is not None:
        from sandbox_rl.envs.trace import trace_counts

        result.trace_counts = trace_counts(args.trace)
    _print_summary(result, args)
    return 0


def _usage_error(prog: str, err: ValueError) -> int:
    """Print a config error as one line, naming the command-line flag where there is one."""
    message = str(err)
    match = _INVALID.fullmatch(message)
    if match and match.group(1) in _FLAG_OF_OPTION:
        option, value, expected = match.groups()
        message = f"argument {_FLAG_OF_OPTION[option]}: invalid value {value}: expected {expected}"
    print(f"{prog}: error: {message} (see {prog} --help)", file=sys.stderr)
    return USAGE_ERROR


def _play(env, observations: dict, args: argparse.Namespace, setup_s: float) -> _RunResult:
    from sandbox_rl.envs.heuristics import HeuristicPolicy

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
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeRemainingColumn)

    # On stderr, so that stdout carries only the summary.
    with Progress(TextColumn("simulating"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), transient=True, console=_console(stderr=True)) as bar:
        task = bar.add_task("steps", total=total)
        yield lambda: bar.advance(task)


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr)


def _print_summary(result: _RunResult, args: argparse.Namespace) -> None:
    from rich.table import Table

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
    from sandbox_rl.core.run import EvolveRunConfig
    from sandbox_rl.enums import EvolutionStrategy
    from sandbox_rl.training.common import add_config_arguments

    evolve = commands.add_parser(
        "evolve", help="run a self-evolving simulation (LLM agents) into a run folder",
        description="Run the self-evolving sandbox: five LLM task agents act in the world, "
                    "evolve by the chosen strategy, and the run folder gets metrics, the saved "
                    "state, plots and a summary.")
    add_config_arguments(evolve, EvolveRunConfig,
                         {"strategy": tuple(s.value for s in EvolutionStrategy)})
    evolve.set_defaults(run=run_evolve)


def run_evolve(args: argparse.Namespace) -> int:
    from sandbox_rl.core.run import EvolveRunConfig, run_evolution
    from sandbox_rl.training.common import config_from_args

    prog = "sandbox-rl evolve"
    try:
        config = config_from_args(EvolveRunConfig, args)
    except ValueError as err:
        return _config_error(prog, err)
    try:
        run_evolution(config)
    except (FileExistsError, ValueError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------------- train
@dataclass(frozen=True)
class Trainer:
    """A ``sandbox-rl train`` entry point: its config dataclass, trainer and result printer."""

    config: type
    train: Callable
    report: Callable
    help: str
    choices: dict[str, tuple] | None = None


def trainers() -> dict[str, Trainer]:
    """The train subcommands; one entry per entry point (the modules import nothing heavy)."""
    from sandbox_rl.training import llm_ppo, rllib, sb3, shared_policy

    return {
        "sb3": Trainer(sb3.SB3Config, sb3.train, sb3.report,
                       "SB3 PPO on one role of SelfEvolvingOasis-v0 (extra sb3)",
                       {"task": sb3.TASKS, "vec_env": sb3.VEC_ENVS}),
        "supersuit": Trainer(shared_policy.SharedPolicyConfig, shared_policy.train,
                             shared_policy.report,
                             "one SB3 PPO policy shared by all five agents, via SuperSuit "
                             "(extra sb3)"),
        "rllib": Trainer(rllib.RLlibConfig, rllib.train, rllib.report,
                         "RLlib multi-agent PPO, one module per agent (extra rllib)"),
        "llm-ppo": Trainer(llm_ppo.LLMPPOConfig, llm_ppo.train, llm_ppo.report,
                           "TRL PPO on the task LoRA adapters, scored by the env; trained vs "
                           "untrained on held-out worlds"),
    }


def _add_train(commands) -> None:
    from sandbox_rl.training.common import add_config_arguments

    train = commands.add_parser("train", help="train a policy and evaluate it on held-out worlds",
                                description="Train a policy, then print its held-out reward "
                                            "next to the random and heuristic baselines.")
    kinds = train.add_subparsers(dest="trainer", required=True, metavar="TRAINER",
                                 parser_class=_Parser)
    for name, trainer in trainers().items():
        sub = kinds.add_parser(name, help=trainer.help, description=trainer.help)
        add_config_arguments(sub, trainer.config, trainer.choices)
        sub.set_defaults(run=partial(run_training, name, trainer))


def run_training(name: str, trainer: Trainer, args: argparse.Namespace) -> int:
    """The ``train NAME`` command: build the config, train, print the evaluation table."""
    from sandbox_rl.training.common import ExtraMissingError, config_from_args

    prog = f"sandbox-rl train {name}"
    try:
        config = config_from_args(trainer.config, args)
    except ValueError as err:
        return _config_error(prog, err)
    try:
        result = trainer.train(config)
    except (ExtraMissingError, FileExistsError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 1
    trainer.report(result, _console())
    return 0


def _config_error(prog: str, err: ValueError) -> int:
    """A config error as one line naming the flag (``invalid seed=-1`` -> ``--seed``)."""
    from sandbox_rl.training.common import flag_of

    message = str(err)
    match = _INVALID.fullmatch(message)
    if match:
        option, value, expected = match.groups()
        message = f"argument {flag_of(option)}: invalid value {value}: expected {expected}"
    print(f"{prog}: error: {message} (see {prog} --help)", file=sys.stderr)
    return USAGE_ERROR
