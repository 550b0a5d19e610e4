"""The main job (``make run``): a self-evolving simulation written to a run folder.

    <out>/logs/metrics.jsonl, <out>/logs/tensorboard/   per-step metrics (monitoring)
    <out>/state/                                        the saved sandbox (load_state reads it)
    <out>/plots/{scores,events,network}.png             per-task score, evolution events, growth
    <out>/summary.json                                  the summary table's numbers
    <out>/.sandbox_rl_run.json                          marks the folder as a run of evolve

``--overwrite`` empties only a folder that is recognisably such a run folder (marked, or holding
an earlier run's summary or state) and holds nothing else; any other folder is refused.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from sandbox_rl.enums import EvolutionStrategy, TaskType
from sandbox_rl.envs.config import require
from sandbox_rl.training.common import field


@dataclass
class EvolveRunConfig:
    """Arguments of ``sandbox-rl evolve`` (one flag per field)."""

    steps: int = field(20, "env steps to simulate")
    strategy: str = field("multi_model", "evolution strategy")
    model: str = field("embedded", "model of all five task agents")
    users: int = field(1000, "simulated users")
    pool_size: int = field(3, "members (adapters) per task")
    evolution_interval: int = field(5, "env steps between evolution steps")
    online_adaptation: bool = field(True, "small reward-weighted adapter updates between them")
    seed: int = field(0, "world and model seed")
    adapters: str | None = field(None, "start every task from the adapters a `sandbox-rl train "
                                       "agents` run saved (its run folder)")
    out: str = field("runs/latest", "run folder")
    overwrite: bool = field(False, "replace the run folder of an earlier evolve run")
    quiet: bool = field(False, "no progress bar or summary")

    def __post_init__(self) -> None:
        for name in ("steps", "users", "pool_size", "evolution_interval"):
            value = getattr(self, name)
            require(isinstance(value, int) and value >= 1, name, value, "an integer >= 1")
        require(self.strategy in {s.value for s in EvolutionStrategy}, "strategy", self.strategy,
                "one of " + ", ".join(s.value for s in EvolutionStrategy))
        require(isinstance(self.seed, int) and self.seed >= 0, "seed", self.seed, "an integer >= 0")
        require(bool(str(self.out).strip()), "out", self.out, "a folder path")


def run_evolution(args: EvolveRunConfig) -> dict:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from sandbox_rl.core.monitoring import step_record
    from sandbox_rl.core.plots import plot_run
    from sandbox_rl.core.config import SelfEvolvingConfig
    from sandbox_rl.core.self_evolving_oasis import SelfEvolvingOasis
    from sandbox_rl.run_folders import EVOLVE, prepare_run_folder

    options = dict(evolution_strategy=args.strategy, model_pool_size=args.pool_size,
                   evolution_interval=args.evolution_interval, num_users=args.users,
                   seed=args.seed, enable_online_adaptation=args.online_adaptation,
                   task_distribution={t: args.model for t in TaskType}, fallback_model=None,
                   adapters_dir=args.adapters)
    # Every option is checked before the run folder is touched (a bad one leaves no folder).
    SelfEvolvingConfig(**options, log_dir=str(Path(args.out) / "logs"))
    out = prepare_run_folder(args.out, args.overwrite, EVOLVE)
    console = Console(stderr=True, quiet=args.quiet)
    start = time.perf_counter()
    with console.status(f"loading {args.model} with {5 * args.pool_size} adapters"):
        sandbox = SelfEvolvingOasis(SelfEvolvingConfig(**options, log_dir=str(out / "logs")))
    setup_s = time.perf_counter() - start
    records = []
    columns = (TextColumn("[bold]evolve"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[scores]}"))
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task("steps", total=args.steps, scores="")
        for _ in range(args.steps):
            result = sandbox.simulate_step()
            records.append(step_record(result))
            scores = " ".join(f"{t[:4]}={r['performance_score']:.2f}"
                              for t, r in result["tasks"].items())
            progress.update(bar, advance=1, scores=scores)
    saved = sandbox.save_state(out / "state")
    sandbox.close()
    if not saved:
        raise RuntimeError(f"could not save the state to {out / 'state'} (see the log)")
    plots = plot_run(records, out / "plots")
    summary = summarise(records, sandbox, setup_s, time.perf_counter() - start, args)
    summary["plots"] = [str(p) for p in plots]
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    print_summary(summary, Console(quiet=args.quiet))
    return summary


def summarise(records, sandbox, setup_s: float, total_s: float, args: EvolveRunConfig) -> dict:
    from sandbox_rl.training.protocol import paired_difference

    half = max(len(records) // 2, 1)
    tasks = {}
    for task in records[0]["scores"]:
        scores = [r["scores"][task] for r in records]
        # the task's baseline actions scored on the same steps (counterfactually)
        refs = {kind: [r[kind][task] for r in records] for kind in ("heuristic", "random")}
        tasks[task] = {"mean": sum(scores) / len(scores),
                       "first_half": sum(scores[:half]) / len(scores[:half]),
                       "second_half": sum(scores[half:]) / max(len(scores[half:]), 1),
                       **{kind: sum(v) / len(v) for kind, v in refs.items()},
                       # paired over the run's steps (one world: the steps are not independent
                       # worlds, so this interval is descriptive; held-out figures come from
                       # `sandbox-rl evaluate`)
                       **{f"minus_{kind}": paired_difference(scores, v).as_dict()
                          for kind, v in refs.items()},
                       "parse_errors": sum(task in r["parse_errors"] for r in records)}
    events: dict[str, int] = {}
    for r in records:
        for e in r["events"]:
            events[e["type"]] = events.get(e["type"], 0) + 1
    stats = sandbox.evolving_llm.get_evolution_stats()
    return {"config": asdict(args), "tasks": tasks, "events": events,
            "evolution_step": stats["evolution_step"], "network": records[-1]["network"],
            "seconds_setup": round(setup_s, 1), "seconds_total": round(total_s, 1),
            "seconds_per_step": round(sum(r["seconds"] for r in records) / len(records), 2),
            "peak_rss_bytes": records[-1]["peak_rss_bytes"], "out": args.out}


def print_summary(summary: dict, console) -> None:
    from rich.table import Table

    table = Table(title=f"Self-evolving run ({summary['config']['strategy']}, "
                        f"{summary['config']['steps']} steps, {summary['config']['model']})")
    for col in ("task", "agents", "first half", "second half", "heuristic", "random",
                "agents - random", "parse errors"):
        table.add_column(col, justify="left" if col == "task" else "right")
    for task, t in summary["tasks"].items():
        d = t["minus_random"]
        table.add_row(task, f"{t['mean']:.3f}", f"{t['first_half']:.3f}",
                      f"{t['second_half']:.3f}", f"{t['heuristic']:.3f}", f"{t['random']:.3f}",
                      f"{d['mean']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]",
                      str(t["parse_errors"]))
    table.caption = ("mean reward per step; heuristic and random: the task's baseline actions "
                     "scored on the same steps; agents - random: paired over the steps, 95% "
                     "interval (one world; held-out figures: sandbox-rl evaluate)")
    console.print(table)
    net = summary["network"]
    console.print(f"evolution steps {summary['evolution_step']}, events "
                  f"{summary['events'] or 'none'}; users {net.get('total_users')}, posts "
                  f"{net.get('total_posts')}, edges {net.get('total_edges')}, density "
                  f"{net.get('network_density', 0):.4f}")
    console.print(f"{summary['seconds_per_step']} s/step, {summary['seconds_total']} s total, "
                  f"peak RSS {summary['peak_rss_bytes'] / 2**30:.2f} GiB; run folder "
                  f"{summary['out']} (logs/, state/, plots/, summary.json)")
