"""What this tool may delete: its own run folders, saved states and their temporaries.

Anything removed or replaced must be recognisably written by sandbox_rl: a saved state by its
manifest (``manifest.json`` of format :data:`STATE_FORMAT`), a run folder by the marker file
:data:`MARKER` (or, for runs older than the marker, the summary or state they hold) and by
holding nothing but the entries its command writes, and a publish temporary of a state by its
name, ``.<target>.<pid>-<token>.tmp`` / ``.old``, beside the target. A folder that is none of
these (the working directory, a home folder, a file) is refused with an error naming what was
found, and left as it was.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Callable, Iterable, NamedTuple

STATE_FORMAT = "sandbox_rl.self_evolving_oasis"
STATE_MANIFEST = "manifest.json"
MARKER = ".sandbox_rl_run.json"
# A manifest is a few KiB per file listed; anything far larger is not one of ours.
_MAX_MANIFEST_BYTES = 64 << 20


def read_json(path: Path, limit: int = _MAX_MANIFEST_BYTES):
    """The JSON in ``path``, or None when it is missing, too large, not UTF-8 or not JSON."""
    try:
        if not path.is_file() or path.stat().st_size > limit:
            return None
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None


def is_state_folder(path: str | os.PathLike) -> bool:
    """A folder (not a link) holding a ``save_state`` manifest."""
    folder = Path(path)
    if folder.is_symlink() or not folder.is_dir():
        return False
    manifest = read_json(folder / STATE_MANIFEST)
    return isinstance(manifest, dict) and manifest.get("format") == STATE_FORMAT


# ----------------------------------------------------------------------------- state temporaries
class Sibling(NamedTuple):
    """A publish temporary of a state: ``kind`` is ``"tmp"`` (being written) or ``"old"`` (the
    previous state, moved aside until the new one is in place)."""

    path: Path
    pid: int
    token: str
    kind: str


def sibling_name(target_name: str, pid: int, token: str, kind: str) -> str:
    return f".{target_name}.{pid}-{token}.{kind}"


def state_siblings(target: Path) -> list[Sibling]:
    """The publish temporaries of ``target`` that lie beside it (folders, not links)."""
    pattern = re.compile(re.escape(f".{target.name}.") + r"(\d{1,10})-([0-9a-f]{8})\.(tmp|old)")
    legacy = re.compile(re.escape(f".{target.name}.old-") + r"(\d{1,10})")  # before pid-token names
    found = []
    try:
        entries = list(target.parent.iterdir())
    except OSError:
        return []
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is not None:
            item = Sibling(entry, int(match[1]), match[2], match[3])
        elif (match := legacy.fullmatch(entry.name)) is not None:
            item = Sibling(entry, int(match[1]), "", "old")
        else:
            continue
        if entry.is_dir() and not entry.is_symlink():
            found.append(item)
    return found


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # exists (another user's) or unknowable: treat as alive, delete nothing
    return True


# ----------------------------------------------------------------------------- run folders
def _is_evolve_run(folder: Path) -> bool:
    summary = read_json(folder / "summary.json")
    if isinstance(summary, dict) and isinstance(summary.get("config"), dict) \
            and "strategy" in summary["config"]:
        return True
    return is_state_folder(folder / "state")


def _is_llm_ppo_run(folder: Path) -> bool:
    results = read_json(folder / "results.json")
    return isinstance(results, dict) and isinstance(results.get("config"), dict) \
        and "updates" in results["config"]


class RunKind(NamedTuple):
    """A command's run folder: the entries it writes, and how a run without the marker (from
    before it existed) is recognised."""

    name: str
    outputs: frozenset[str]
    legacy: Callable[[Path], bool]


EVOLVE = RunKind("evolve", frozenset({"logs", "state", "plots", "summary.json"}), _is_evolve_run)
LLM_PPO = RunKind("llm-ppo", frozenset({"tb", "checkpoints", "adapters", "results.json"}),
                  _is_llm_ppo_run)


def _marker_kind(folder: Path) -> str | None:
    marker = read_json(folder / MARKER, limit=1 << 16)
    if isinstance(marker, dict) and marker.get("tool") == "sandbox_rl":
        kind = marker.get("kind")
        return kind if isinstance(kind, str) else None
    return None


def foreign_entries(folder: Path, kind: RunKind) -> list[str]:
    """Entries of ``folder`` that a run of ``kind`` does not write."""
    state_tmp = re.compile(r"\.state\.\d{1,10}-[0-9a-f]{8}\.(tmp|old)")
    return sorted(e.name for e in folder.iterdir()
                  if e.name not in kind.outputs and e.name != MARKER
                  and not state_tmp.fullmatch(e.name))


def why_not_run_folder(folder: Path, kind: RunKind, whole: bool = True) -> str | None:
    """None when ``folder`` is recognisably a run folder of ``kind``, else the reason.
    ``whole``: the folder itself is to be emptied, so it must hold nothing else either."""
    if folder.is_symlink() or not folder.is_dir():
        return f"{folder} is not a folder"
    here = Path.cwd().resolve()
    resolved = folder.resolve()
    if whole and (resolved == here or resolved in here.parents):
        return f"{folder} is the working directory or one of its parents"
    marked = _marker_kind(folder)
    if marked is not None and marked != kind.name:
        return f"{folder} is a run folder of `{marked}`, not of `{kind.name}`"
    if marked is None and not kind.legacy(folder):
        return (f"{folder} is not a run folder of `sandbox-rl {kind.name}` "
                f"(no {MARKER} marker)")
    foreign = foreign_entries(folder, kind) if whole else []
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5
                                          else "")
        return f"{folder} holds files a `{kind.name}` run does not write ({shown})"
    return None


def clear_run_folder(folder: Path, kind: RunKind) -> None:
    """Remove what a previous run of ``kind`` wrote in ``folder`` (the folder itself stays);
    FileExistsError, with nothing removed, when it is not recognisably such a run folder."""
    reason = why_not_run_folder(folder, kind)
    if reason is not None:
        raise FileExistsError(f"--overwrite replaces only a run folder of this tool: {reason}; "
                              "choose another --out or remove it yourself")
    for entry in sorted(folder.iterdir()):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def prepare_run_folder(out: str | os.PathLike, overwrite: bool, kind: RunKind) -> Path:
    """The run folder ``out``, created (or emptied, with ``overwrite``, if it is one of ours)
    and marked as a run of ``kind``. A non-empty folder without ``overwrite``, a folder that
    is not recognisably one of ours, or a file, is a FileExistsError naming it."""
    folder = Path(out)
    if folder.exists() or folder.is_symlink():
        if folder.is_symlink() or not folder.is_dir():
            raise FileExistsError(f"--out {folder} exists and is not a folder")
        if any(folder.iterdir()):
            if not overwrite:
                raise FileExistsError(f"{folder} exists and is not empty; pass --overwrite to "
                                      "replace it")
            clear_run_folder(folder, kind)
    folder.mkdir(parents=True, exist_ok=True)
    write_marker(folder, kind)
    return folder


def write_marker(folder: Path, kind: RunKind) -> None:
    (folder / MARKER).write_text(json.dumps({"tool": "sandbox_rl", "kind": kind.name}) + "\n")


def remove_outputs(folder: Path, kind: RunKind, names: Iterable[str] | None = None) -> None:
    """Remove the named outputs (default: all) of a recognised run of ``kind`` in ``folder``
    (other entries stay); FileExistsError, with nothing removed, when it is not one."""
    reason = why_not_run_folder(folder, kind, whole=False)
    if reason is not None:
        raise FileExistsError(f"--overwrite replaces only a run folder of this tool: {reason}")
    for name in sorted(kind.outputs if names is None else set(names) & kind.outputs):
        entry = folder / name
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        elif entry.exists() or entry.is_symlink():
            entry.unlink()
