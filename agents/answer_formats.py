"""Which answer format each saved task adapter was trained for.

A task's prompt and answer format can change (since format 2, user_engagement answers a row of
its numbered segment table instead of a segment's name). An adapter trained for an earlier
format still loads, but it was fine-tuned to answer another prompt. ``TaskAdapters.save``
records each task adapter's format in ``answer_formats.json`` next to the adapters, and
``TaskAdapters.load_from`` warns, naming the adapter, both formats and the fix, when a loaded
task adapter's recorded format is not its task's current one (format 1 when nothing was
recorded: adapters saved before formats were recorded). A ``UserWarning`` rather than a log
line: the caller can remove its cause (retrain), and Python shows it once per adapter folder
however many pool members load that folder.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Sequence

from sandbox_rl.agents.task_specs import spec
from sandbox_rl.enums import TaskType

FILE = "answer_formats.json"
UNRECORDED = 1  # the format of adapters saved before formats were recorded


def task_of(name: str) -> TaskType | None:
    """The task of adapter ``name`` (a task, or a pool member ``task__k``); None for others."""
    try:
        return TaskType.parse(name.split("__")[0])
    except ValueError:
        return None


def record(directory: str | Path, names: Sequence[str]) -> None:
    """Write the current answer format of every task adapter among ``names`` saved in
    ``directory`` (other adapters, e.g. a meta-initialisation, have none)."""
    formats = {n: spec(t).format_version for n in names if (t := task_of(n)) is not None}
    if formats:
        (Path(directory) / FILE).write_text(json.dumps(formats, indent=1, sort_keys=True))


def stale(folder: str | Path) -> str | None:
    """Why the task adapter saved in ``folder`` (``directory/name``) was trained for another
    answer format than its task's current one, or None when it was not (or is no task's)."""
    folder = Path(folder)
    task = task_of(folder.name)
    if task is None:
        return None
    saved = folder.parent / FILE
    try:
        recorded = int(json.loads(saved.read_text()).get(folder.name, UNRECORDED))
    except FileNotFoundError:
        recorded = UNRECORDED
    except (ValueError, TypeError, AttributeError) as error:
        return f"{saved} is not a JSON object of format numbers ({error})"
    current = spec(task).format_version
    if recorded == current:
        return None
    return (f"adapter {folder} was trained for answer format {recorded} of {task.value}; its "
            f"agents now use format {current} ({spec(task).format_change}): retrain it, e.g. "
            f"`sandbox-rl train agents --tasks {task.value}`")


def warn_if_stale(folder: str | Path) -> None:
    reason = stale(folder)
    if reason is not None:
        warnings.warn(reason, UserWarning, stacklevel=3)  # at the caller of load_from
