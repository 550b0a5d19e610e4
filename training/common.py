"""Pieces shared by the training entry points: config checks, CLI flags from configs, run folders,
the held-out evaluation of trained and untrained adapters.

Every entry point has a config dataclass whose fields are its command-line flags
(``--eval-seeds`` for ``eval_seeds``); the help text of a flag is the field's ``help`` metadata.
The trainers' configs share base classes and their checks (``training/configs.py``).
Nothing here imports an optional dependency.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import types
import typing
from pathlib import Path
from typing import Any, Callable

import numpy as np
from safetensors.numpy import load_file

from sandbox_rl.run_folders import pid_alive, publish_folder, read_json, state_siblings
from sandbox_rl.validation import Int, require

__all__ = ["EVALUATIONS", "ExtraMissingError", "add_config_arguments", "check_held_out",
           "check_next_task", "check_sb3_ppo", "config_from_args", "config_int",
           "evaluate_trained_and_untrained", "field", "finite_tensors", "flag_of",
           "import_optional", "interrupted_message", "prepare_out_dir", "print_evaluations",
           "read_resume_point", "require", "resume_settings", "save_config", "save_resume_point",
           "task_in_progress"]

# A trainer's resume point: ``<out>/resume/`` holding ``state.json`` (the config and what is done)
# and ``adapters/`` (PEFT format), replaced atomically after each finished unit of work.
RESUME_DIR = "resume"
RESUME_STATE = "state.json"


class ExtraMissingError(ImportError):
    """An optional dependency of an entry point is not installed."""


def field(default: Any, help: str) -> Any:  # noqa: A002  (argparse's word)
    """A dataclass field with its command-line help; tuples get a default factory."""
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple for sequence defaults")
    return dataclasses.field(default=default, metadata={"help": help})


def config_int(low: int) -> Int:
    """The range of the trainer configs' counts and seeds: Python ints >= ``low``; True and
    False pass as 1 and 0, as they did (``isinstance(True, int)``) before the checks were
    shared."""
    return Int(low, numpy=False, bools=True)


def check_sb3_ppo(cfg: Any, rows: int, rows_expr: str) -> None:
    """Checks of SB3 PPO's own settings, shared by the SB3 entry points; ``rows`` is the
    rollout size ``batch_size`` must fit in (``rows_expr`` says how it is computed)."""
    require(cfg.n_envs >= 1, "n_envs", cfg.n_envs, "an integer >= 1")
    require(cfg.n_steps >= 2, "n_steps", cfg.n_steps, "an integer >= 2")
    require(2 <= cfg.batch_size <= rows, "batch_size", cfg.batch_size,
            f"in [2, {rows_expr} = {rows}]")
    require(cfg.n_epochs >= 1, "n_epochs", cfg.n_epochs, "an integer >= 1")
    require(cfg.ent_coef >= 0, "ent_coef", cfg.ent_coef, ">= 0")
    check_held_out(cfg.eval_seeds, range(cfg.seed, cfg.seed + cfg.n_envs))


def check_held_out(eval_seeds: tuple[int, ...], train_seeds: range) -> None:
    """Evaluation worlds must differ from the worlds the policy trained in."""
    clash = sorted(set(eval_seeds) & set(train_seeds))
    require(not clash, "eval_seeds", tuple(eval_seeds),
            f"seeds outside the training seeds {train_seeds.start}..{train_seeds.stop - 1} "
            f"(held-out evaluation; {clash} overlap)")


# ---------------------------------------------------------------------- configs as flags
def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_config_arguments(parser: argparse.ArgumentParser, config_cls: type,
                         choices: dict[str, tuple] | None = None) -> None:
    """One flag per field of ``config_cls``, typed from its annotation, default from the field."""
    hints = typing.get_type_hints(config_cls)
    for f in dataclasses.fields(config_cls):
        kind, default = hints[f.name], f.default
        if default is dataclasses.MISSING:  # a base config's field its trainer must give one
            raise TypeError(f"{config_cls.__name__}.{f.name} has no default for its flag")
        help_text = f.metadata.get("help", "")
        extra: dict[str, Any] = {"choices": choices[f.name]} if choices and f.name in choices else {}
        if kind is bool:
            parser.add_argument(_flag(f.name), action=argparse.BooleanOptionalAction,
                                default=default, help=help_text)
        elif typing.get_origin(kind) is tuple:
            item = typing.get_args(kind)[0]
            parser.add_argument(_flag(f.name), type=_typed(item), nargs="+", default=default,
                                metavar=item.__name__.upper(),
                                help=f"{help_text} (default {' '.join(map(str, default))})")
        else:
            base = _optional_of(kind)
            shown = "none" if default is None else default
            if not extra:
                extra["metavar"] = base.__name__.upper()
            parser.add_argument(_flag(f.name), type=_typed(base), default=default,
                                help=f"{help_text} (default {shown})", **extra)


def _optional_of(kind: Any) -> type:
    """``X | None`` -> X; anything else unchanged."""
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return kind


def _typed(kind: type):
    """An argparse type whose error names what was expected."""
    def parse(text: str):
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text!r}") from None
    parse.__name__ = kind.__name__
    return parse


def config_from_args(config_cls: type, args: argparse.Namespace) -> Any:
    """Build ``config_cls`` from parsed flags (sequences become tuples); validation runs here."""
    values = {}
    for f in dataclasses.fields(config_cls):
        value = getattr(args, f.name)
        values[f.name] = tuple(value) if isinstance(value, list) else value
    return config_cls(**values)


def flag_of(option: str) -> str:
    """The command-line flag of a config field, for error messages."""
    return _flag(option)


# ---------------------------------------------------------------------- optional deps, run folders
def import_optional(module: str, extra: str) -> types.ModuleType:
    """Import an optional dependency, or raise an error saying which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ExtraMissingError(
            f"{module} is not installed ({err}); install the extra with "
            f"`pip install -e '.[{extra}]'`") from err


def prepare_out_dir(out: str | Path, overwrite: bool, marker: str) -> Path:
    """Create the run folder; refuse one holding a finished run (``marker``) unless ``overwrite``."""
    path = Path(out)
    if (path / marker).exists() and not overwrite:
        raise FileExistsError(f"{path} already holds a trained run ({marker}); pass --overwrite "
                              "or choose another --out")
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"--out {path} exists and is not a folder")
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_config(cfg: Any, path: Path) -> None:
    path.write_text(json.dumps(dataclasses.asdict(cfg), indent=2) + "\n")


# ---------------------------------------------------------------------- resuming a trainer
def save_resume_point(out: Path, adapters: Any, state: dict,
                      extra: Callable[[Path], None] | None = None) -> Path:
    """Replace ``out/resume/`` atomically by ``adapters`` (all of them, PEFT format) and
    ``state`` (JSON: the config and what is finished); ``extra(folder)`` writes what else the
    trainer needs in the same folder (e.g. a learner's tensors), so that it is replaced with the
    rest and never pairs with another save's state."""
    def write(folder: Path) -> None:
        adapters.save(folder / "adapters")
        if extra is not None:
            extra(folder)
        (folder / RESUME_STATE).write_text(json.dumps(state, indent=1, default=str))

    return publish_folder(out / RESUME_DIR, write)


def read_resume_point(run: Path) -> tuple[Path, dict] | None:
    """The resume point of the run in ``run`` (its folder, its state), or None when there is
    none; a publish that died between its renames counts (its old folder is read in place)."""
    folder = run / RESUME_DIR
    if not folder.is_dir():
        aside = [s.path for s in state_siblings(folder) if s.kind == "old" and not pid_alive(s.pid)]
        if not aside:
            return None
        folder = aside[0]
    state = read_json(folder / RESUME_STATE)
    return (folder, state) if isinstance(state, dict) else None


def task_in_progress(run: str, what: str, state: dict,
                     check: Callable[[dict], Any]) -> Any:
    """The task in progress of a trainer's resume point ``state`` (None when there is none: a
    point saved between tasks or by an earlier version), as ``check(saved entry)`` builds and
    checks it; a ValueError it raises becomes one naming ``resume`` (the folder ``run``, a
    ``what``), so a resume that cannot continue the task refuses before anything changes."""
    if state.get("in_progress") is None:
        return None
    try:
        saved = state["in_progress"]
        if not isinstance(saved, dict):
            raise ValueError(f"in_progress is a {type(saved).__name__}, not an object")
        return check(saved)
    except (KeyError, TypeError, ValueError) as err:
        require(False, "resume", run, f"{what} (its task in progress does not load: "
                                      f"{str(err)[:200]})")


def check_next_task(folder: Path, state: dict, tasks: tuple[str, ...], task: str) -> None:
    """ValueError unless ``task`` is the one after the resume point's finished tasks and its
    adapter is in the point's folder ``folder``."""
    finished = len(state["tasks"])
    if finished >= len(tasks) or task != tasks[finished]:
        raise ValueError(f"its task {task!r} is not the one after the finished tasks")
    if not (folder / "adapters" / task / "adapter_config.json").is_file():
        raise ValueError(f"its adapter ({RESUME_DIR}/adapters/{task}) is missing")


def finite_tensors(path: Path) -> dict:
    """The tensors of the safetensors file ``path`` as NumPy arrays (NumPy only: the CLI stays
    light); ValueError when it is missing, does not load or holds a non-finite float (names
    and shapes are checked where the tensors are loaded into a model or learner)."""
    if not path.is_file():
        raise ValueError(f"{path.name} is missing")
    try:
        tensors = load_file(str(path))
    except Exception as err:  # safetensors raises its own error types
        raise ValueError(f"{path.name} does not load ({str(err)[:100]})") from None
    bad = sorted(k for k, v in tensors.items() if v.dtype.kind == "f" and not np.isfinite(v).all())
    if bad:
        raise ValueError(f"{path.name}: {bad[0]} is not finite")
    return tensors


def interrupted_message(out: Path, finished: list[str], total: int, in_progress: str | None,
                        hint: str, nothing: str) -> str:
    """What a trainer's Ctrl-C kept: its ``finished`` tasks of ``total``, ``in_progress`` (what
    of the task in progress was kept, None: nothing), where, and ``hint`` (how to continue);
    ``nothing`` when neither was kept."""
    if not finished and in_progress is None:
        return nothing
    kept = [f"{len(finished)} of {total} tasks finished"
            + (f" ({', '.join(finished)})" if finished else "")]
    if in_progress is not None:
        kept.append(in_progress)
    return f"interrupted: {', '.join(kept)}, saved in {out / RESUME_DIR}; {hint}"


def resume_settings(cfg: Any, saved: Any, run: Path, given: set[str] | None,
                    free: tuple[str, ...]) -> Any:
    """``saved`` (the run's config) with the ``free`` fields of ``cfg`` that ``given`` names
    (the flags the user typed; None: the fields that differ from their defaults); ValueError
    naming the field when another given field differs from the run's, when ``--overwrite`` is
    given or ``--out`` names another folder."""
    if given is None:
        defaults = type(cfg)()
        given = {f.name for f in dataclasses.fields(cfg)
                 if getattr(cfg, f.name) != getattr(defaults, f.name)}
    for f in dataclasses.fields(cfg):
        if f.name in free or f.name in ("out", "overwrite", "resume") or f.name not in given:
            continue
        ours, theirs = getattr(cfg, f.name), getattr(saved, f.name)
        require(ours == theirs, f.name, ours, f"the run's own {theirs!r} (a resumed run keeps "
                                              "its settings; leave the flag out)")
    require(not cfg.overwrite, "overwrite", cfg.overwrite, "no --overwrite with --resume (it "
                                                           "continues the run in its folder)")
    require("out" not in given or Path(cfg.out).resolve() == run.resolve(), "out", cfg.out,
            f"the --resume folder {str(run)!r}, or no --out")
    kept = {name: getattr(cfg, name) for name in free if name in given}
    return dataclasses.replace(saved, **kept, out=str(run), overwrite=False, resume=str(run))


# ---------------------------------------------------------------------- held-out evaluation
# The evaluation protocol's lines for a trainer's trained and untrained adapters, in its folder.
EVALUATIONS = ("eval_trained.jsonl", "eval_untrained.jsonl")


def evaluate_trained_and_untrained(adapters: Any, config: Any, out: Path, model: str,
                                   sampled_temperature: float = 0.0,
                                   elsewhere: Callable[[Path | None], Any] | None = None
                                   ) -> dict:
    """The evaluation protocol (``training/protocol.py``) under ``config`` (a
    ``ProtocolConfig``) for the trained ``adapters`` (saved in ``out/adapters``) and the
    untrained ones (the base model) on the same worlds; each report saved in ``out`` as
    :data:`EVALUATIONS` says. ``sampled_temperature`` (0: the protocol's own): the temperature
    of the sampled arm, for adapters whose rollouts sampled at it. ``elsewhere(folder)``: the
    report of the adapters saved in ``folder`` (None: untrained) played outside this process
    (``protocol_ray.play_on_ray``), instead of by ``adapters`` here."""
    # Heavy (torch, peft): on use, so importing this module (the CLI) stays light.
    from sandbox_rl.training.protocol import adapter_answerer, run_protocol

    reports = {}
    for label, untrained in (("trained", False), ("untrained", True)):
        if elsewhere is not None:
            reports[label] = elsewhere(None if untrained else out / "adapters")
        else:
            answer = _sampled_at(adapter_answerer(adapters, untrained=untrained),
                                 sampled_temperature)
            reports[label] = run_protocol(config, answer, "untrained" if untrained
                                          else str(out / "adapters"), model)
        reports[label].save(out / f"eval_{label}.jsonl")
    return reports


def _sampled_at(answer: Any, temperature: float) -> Any:
    """``answer`` (a protocol ``Answerer``) with its sampled answers decoded at
    ``temperature``; greedy answers (temperature 0) unchanged."""
    if not temperature:
        return answer
    # Heavy (torch, peft): on use, so importing this module (the CLI) stays light.
    from sandbox_rl.training.task_episodes import with_temperature

    def at(task, task_spec, observations, seed):
        if task_spec.sampling.temperature:
            task_spec = with_temperature(task_spec, temperature)
        return answer(task, task_spec, observations, seed)
    return at


def print_evaluations(reports: dict, console: Any) -> None:
    """The trained adapters' protocol table and the trained-minus-untrained comparison."""
    # Heavy (torch, peft): on use, so importing this module (the CLI) stays light.
    from sandbox_rl.training.protocol import comparison_table

    reports["trained"].print(console)
    console.print(comparison_table(reports["trained"], reports["untrained"]))
