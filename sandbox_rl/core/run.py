"""The main job (``make run``): a self-evolving simulation written to a run folder.

    <out>/logs/metrics.jsonl, <out>/logs/tensorboard/   per-step metrics (monitoring)
    <out>/state/                                        the saved sandbox (load_state reads it)
    <out>/checkpoints/step-XXXXXX/                      saved sandboxes of earlier steps
    <out>/plots/{scores,events,network}.png             per-task score, evolution events, growth
    <out>/summary.json                                  the summary table's numbers
    <out>/.sandbox_rl_run.json                          marks the folder as a run of evolve (and
                                                        holds the settings a resume keeps)

``--overwrite`` empties only a folder that is recognisably such a run folder (marked, or holding
an earlier run's summary or state) and holds nothing else; any other folder is refused.

Checkpoints and resuming: ``--checkpoint-every N`` saves the sandbox (``save_state``, atomic)
after every N-th step, keeping the last three; Ctrl-C lets the step in progress finish, saves a
checkpoint of it and raises :class:`RunInterrupted` (the command line exits with status 130,
saying how to resume); a second Ctrl-C stops at once, saving nothing more. ``--resume RUN``
loads the newest checkpoint (or final state) of RUN that loads, keeps the run's settings (a
flag naming another value is refused), truncates ``logs/metrics.jsonl`` to the checkpoint's
step and continues to ``--steps`` in total: bit for bit the run that was never stopped, and its
summary and plots cover every step.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import threading
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Iterable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from sandbox_rl.core.config import SelfEvolvingConfig
from sandbox_rl.core.monitoring import step_record
from sandbox_rl.core.plots import plot_run
# The settings and the check of --resume live apart: the CLI reads them before it imports this.
from sandbox_rl.core.run_config import EvolveRunConfig, resume_config
from sandbox_rl.core.self_evolving_oasis import SelfEvolvingOasis
from sandbox_rl.enums import TaskType
from sandbox_rl.run_folders import (CHECKPOINTS, EVOLVE, RunInterrupted, checkpoint_name,
                                    evolve_checkpoints, prepare_run_folder, prune_checkpoints,
                                    write_marker)
from sandbox_rl.training.protocol import HEURISTIC_TEXT, paired_difference
from sandbox_rl.validation import require

__all__ = ["EvolveRunConfig", "RunInterrupted", "resume_config", "run_evolution"]

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- resuming
def _load_newest(sandbox, run: Path, points: list[tuple[int, Path]]) -> int:
    """Load the newest checkpoint of ``run`` that loads into ``sandbox``; its step."""
    for step, path in points:
        if sandbox.load_state(path) and sandbox.step_count == step:
            return step
        log.warning("checkpoint %s could not be loaded; trying an earlier one", path)
    require(False, "resume", str(run), "a run folder with a checkpoint that loads (every one "
                                       "was refused, see the log)")
    raise AssertionError  # unreachable


def _check_loaded_config(sandbox, expected) -> None:
    """The loaded state's settings must be the run's (a state copied in from elsewhere)."""
    mine, theirs = expected.to_json(), sandbox.config.to_json()
    differ = sorted(k for k in mine if k not in ("log_dir", "device") and mine[k] != theirs.get(k))
    require(not differ, "resume", str(sandbox.config.log_dir), "a checkpoint saved with the "
            f"run's settings (it differs in {', '.join(differ)})")


def _records_until(metrics: Path, step: int) -> tuple[list[dict], list[str]]:
    """The per-step records of steps 1..``step`` in ``metrics`` and their lines (ValueError
    naming --resume when one is missing)."""
    lines, records = [], []
    try:
        text = metrics.read_text(encoding="utf-8") if step else ""
    except (OSError, UnicodeDecodeError) as err:
        require(False, "resume", str(metrics.parent.parent), f"a run whose logs/metrics.jsonl "
                                                             f"can be read ({err})")
    for line in text.splitlines():
        if len(records) == step:
            break
        try:
            record = json.loads(line)
        except ValueError:
            break
        if not isinstance(record, dict) or record.get("step") != len(records) + 1:
            break
        lines.append(line)
        records.append(record)
    require(len(records) == step, "resume", str(metrics.parent.parent),
            f"a run whose logs/metrics.jsonl holds steps 1-{step} (it holds {len(records)})")
    return records, lines


def _truncate(metrics: Path, lines: list[str]) -> None:
    """``metrics`` holding only ``lines`` (what was logged after the checkpoint goes)."""
    metrics.parent.mkdir(parents=True, exist_ok=True)
    tmp = metrics.with_name(f".{metrics.name}.{os.getpid()}.tmp")
    tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    os.replace(tmp, metrics)


# ----------------------------------------------------------------------------- Ctrl-C
class _Stop:
    """While entered (in the main thread): the first SIGINT asks the run to stop after the step
    in progress; a second one raises KeyboardInterrupt at once."""

    def __init__(self, quiet: bool) -> None:
        self.requested, self.quiet, self._previous = False, quiet, None

    def __enter__(self) -> "_Stop":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        if not self.quiet:
            os.write(2, b"\nCtrl-C: stopping after the step in progress and saving a checkpoint "
                        b"(Ctrl-C again to stop at once, without it)\n")


def _resume_hint(out: Path) -> str:
    return f"continue with: sandbox-rl evolve --resume {shlex.quote(str(out))}"


def _checkpoint(sandbox, out: Path) -> Path | None:
    path = out / CHECKPOINTS / checkpoint_name(sandbox.step_count)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not sandbox.save_state(path):
        return None
    prune_checkpoints(out)
    return path


# ----------------------------------------------------------------------------- the run
def run_evolution(args: EvolveRunConfig, given: Iterable[str] | None = None) -> dict:
    """Run (or with ``args.resume``, continue; ``given``: see :func:`resume_config`) an evolve
    run; its summary. Ctrl-C: :class:`RunInterrupted` after saving a checkpoint."""
    if args.resume is not None:
        args = resume_config(args, given)
    # Every option is checked before the run folder is touched (a bad one leaves no folder).
    config = SelfEvolvingConfig(
        evolution_strategy=args.strategy, model_pool_size=args.pool_size,
        evolution_interval=args.evolution_interval, num_users=args.users, seed=args.seed,
        enable_online_adaptation=args.online_adaptation,
        task_distribution={t: args.model for t in TaskType}, fallback_model=None,
        adapters_dir=args.adapters, log_dir=str(Path(args.out) / "logs"))
    settings = asdict(replace(args, overwrite=False, resume=None, quiet=False))
    if args.resume is None:
        out = prepare_run_folder(args.out, args.overwrite, EVOLVE, settings)
    else:
        out = Path(args.out)
    console = Console(stderr=True, quiet=args.quiet)
    start = time.perf_counter()
    with console.status(f"loading {args.model} with {5 * args.pool_size} adapters"):
        sandbox = SelfEvolvingOasis(config)
    records = _resume(sandbox, config, out, settings) if args.resume is not None else []
    first = len(records)
    if args.resume is not None:
        console.print(f"resuming {out} at step {first} of {args.steps}")
    setup_s = time.perf_counter() - start
    _steps(sandbox, records, args, out, console)
    try:
        saved = sandbox.save_state(out / "state")  # crash-safe: the old state or the new one
    except KeyboardInterrupt:
        raise RunInterrupted(f"interrupted while saving the final state; "
                             f"{_resume_hint(out)}") from None
    finally:
        sandbox.close()
    if not saved:
        raise RuntimeError(f"could not save the state to {out / 'state'} (see the log)")
    plots = plot_run(records, out / "plots")
    summary = summarise(records, sandbox, setup_s, time.perf_counter() - start, args)
    summary["plots"] = [str(p) for p in plots]
    if args.resume is not None:
        summary["resumed_at_step"] = first
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    print_summary(summary, Console(quiet=args.quiet))
    return summary


def _resume(sandbox, config, out: Path, settings: dict) -> list[dict]:
    """Load the newest checkpoint of ``out`` that loads into ``sandbox`` and check it; only
    then truncate the metrics to its step, drop later checkpoints and record the new settings.
    The records of the steps before it."""
    try:
        first = _load_newest(sandbox, out, evolve_checkpoints(out))
        _check_loaded_config(sandbox, config)
        records, lines = _records_until(out / "logs" / "metrics.jsonl", first)
    except ValueError:
        sandbox.close()
        raise
    _truncate(out / "logs" / "metrics.jsonl", lines)
    prune_checkpoints(out, after=first)
    write_marker(out, EVOLVE, settings)
    return records


def _steps(sandbox, records: list[dict], args: EvolveRunConfig, out: Path, console) -> None:
    """Step ``sandbox`` to ``args.steps``, appending each step's record, checkpointing every
    ``args.checkpoint_every`` steps; on Ctrl-C, :class:`RunInterrupted` (see :class:`_Stop`)."""
    columns = (TextColumn("[bold]evolve"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[scores]}"))
    saved_at = None  # the step of the last checkpoint saved
    try:
        with _Stop(args.quiet) as stop, Progress(*columns, console=console,
                                                 transient=False) as progress:
            bar = progress.add_task("steps", total=args.steps, completed=len(records), scores="")
            while sandbox.step_count < args.steps and not stop.requested:
                result = sandbox.simulate_step()
                # as logs/metrics.jsonl holds it, so a resumed run's records are the same
                records.append(json.loads(json.dumps(step_record(result), default=str)))
                progress.update(bar, advance=1, scores=" ".join(
                    f"{t[:4]}={r['performance_score']:.2f}" for t, r in result["tasks"].items()))
                step = sandbox.step_count
                if args.checkpoint_every and step % args.checkpoint_every == 0 \
                        and step < args.steps:
                    if _checkpoint(sandbox, out) is not None:
                        saved_at = step
                    else:
                        console.print(f"[yellow]could not save the checkpoint of step {step} "
                                      "(see the log); the run goes on")
            if stop.requested and sandbox.step_count < args.steps:
                _stopped(sandbox, args, out, saved_at)
    except KeyboardInterrupt as err:
        if isinstance(err, RunInterrupted):
            raise
        sandbox.close()
        points = evolve_checkpoints(out)
        where = (f"the newest checkpoint is of step {points[0][0]}; {_resume_hint(out)}"
                 if points else "no checkpoint was saved")
        raise RunInterrupted(f"interrupted during step {sandbox.step_count + 1} of {args.steps} "
                             f"(not saved); {where}") from None


def _stopped(sandbox, args: EvolveRunConfig, out: Path, saved_at: int | None) -> None:
    """After the step a Ctrl-C let finish: its checkpoint, then :class:`RunInterrupted`."""
    step = sandbox.step_count
    saved = saved_at == step or _checkpoint(sandbox, out) is not None
    sandbox.close()
    if not saved:
        raise RunInterrupted(f"interrupted after step {step} of {args.steps}; its checkpoint "
                             "could not be saved (see the log)")
    raise RunInterrupted(f"interrupted after step {step} of {args.steps}, checkpoint saved; "
                         f"{_resume_hint(out)}")


def summarise(records, sandbox, setup_s: float, total_s: float, args: EvolveRunConfig) -> dict:
    half = max(len(records) // 2, 1)
    tasks = {}
    for task in records[0]["scores"]:
        scores = [r["scores"][task] for r in records]
        # the task's baseline actions scored on the same steps (counterfactually)
        refs = {kind: [r[kind][task] for r in records] for kind in ("heuristic", "random")}
        if all(task in r.get(HEURISTIC_TEXT, {}) for r in records):
            refs[HEURISTIC_TEXT] = [r[HEURISTIC_TEXT][task] for r in records]
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
    table = Table(title=f"Self-evolving run ({summary['config']['strategy']}, "
                        f"{summary['config']['steps']} steps, {summary['config']['model']})")
    for col in ("task", "agents", "first half", "second half", "heuristic", "random",
                "agents - random", "parse errors"):
        table.add_column(col, justify="left" if col == "task" else "right")
    for task, t in summary["tasks"].items():
        d = t["minus_random"]
        heuristic = f"{t['heuristic']:.3f}"
        if HEURISTIC_TEXT in t:
            heuristic += f" ({t[HEURISTIC_TEXT]:.3f} as text)"
        table.add_row(task, f"{t['mean']:.3f}", f"{t['first_half']:.3f}",
                      f"{t['second_half']:.3f}", heuristic, f"{t['random']:.3f}",
                      f"{d['mean']:+.3f} ±{(d['ci95'][1] - d['ci95'][0]) / 2:.3f}",
                      str(t["parse_errors"]))
    table.caption = ("mean reward per step; heuristic and random: the task's baseline actions "
                     "scored on the same steps (as text: the heuristic's action written as a "
                     "post, which the env reads as it reads the agent's); agents - random: paired "
                     "over the steps, ± the 95% half-width (one world; held-out figures: "
                     "sandbox-rl evaluate)")
    console.print(table)
    net = summary["network"]
    console.print(f"evolution steps {summary['evolution_step']}, events "
                  f"{summary['events'] or 'none'}; users {net.get('total_users')}, posts "
                  f"{net.get('total_posts')}, edges {net.get('total_edges')}, density "
                  f"{net.get('network_density', 0):.4f}")
    console.print(f"{summary['seconds_per_step']} s/step, {summary['seconds_total']} s total, "
                  f"peak RSS {summary['peak_rss_bytes'] / 2**30:.2f} GiB; run folder "
                  f"{summary['out']} (logs/, state/, plots/, summary.json)")
