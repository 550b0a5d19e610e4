"""What this tool may delete: its own run folders, saved states and their temporaries.

Anything removed or replaced must be recognisably written by sandbox_rl: a saved state by its
manifest (``manifest.json`` of format :data:`STATE_FORMAT`), a run folder by the marker file
:data:`MARKER` (or, for runs older than the marker, the summary or state they hold) and by
holding nothing but the entries its command writes, and a publish temporary of a state by its
name, ``.<target>.<pid>-<token>.tmp`` / ``.old``, beside the target. A folder that is none of
these (the working directory, a home folder, a file) is refused with an error naming what was
found, and left as it was.

Long runs keep checkpoints to resume from: an ``evolve`` run's are saved states under
``<out>/checkpoints/step-XXXXXX/`` (the last :data:`KEEP_CHECKPOINTS` kept, see
:func:`evolve_checkpoints` / :func:`prune_checkpoints`), the settings to resume with are in the
marker; a trainer's is one folder replaced atomically (:func:`publish_folder`).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Callable, Iterable, NamedTuple

STATE_FORMAT = "sandbox_rl.self_evolving_oasis"
STATE_MANIFEST = "manifest.json"
MARKER = ".sandbox_rl_run.json"
CHECKPOINTS = "checkpoints"
KEEP_CHECKPOINTS = 3  # an evolve run keeps its last three checkpoints
_CHECKPOINT = re.compile(r"step-(\d{6,15})")


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C after saving what it can; the message says how to resume (the
    command line prints it as one line and exits with status 130)."""
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
    """A finished run (its results.json) or an interrupted one (its resume/state.json)."""
    for path in (folder / "results.json", folder / "resume" / "state.json"):
        results = read_json(path)
        if isinstance(results, dict) and isinstance(results.get("config"), dict) \
                and "updates" in results["config"]:
            return True
    return False


class RunKind(NamedTuple):
    """A command's run folder: the entries it writes, and how a run without the marker (from
    before it existed) is recognised."""

    name: str
    outputs: frozenset[str]
    legacy: Callable[[Path], bool]


EVOLVE = RunKind("evolve", frozenset({"logs", "state", "plots", "summary.json", CHECKPOINTS}),
                 _is_evolve_run)
LLM_PPO = RunKind("llm-ppo", frozenset({"tb", "checkpoints", "adapters", "results.json",
                                        "eval_trained.jsonl", "eval_untrained.jsonl",
                                        "resume"}), _is_llm_ppo_run)


def _marker(folder: Path) -> dict | None:
    marker = read_json(folder / MARKER, limit=1 << 16)
    return marker if isinstance(marker, dict) and marker.get("tool") == "sandbox_rl" else None


def _marker_kind(folder: Path) -> str | None:
    kind = (_marker(folder) or {}).get("kind")
    return kind if isinstance(kind, str) else None


def marker_config(folder: Path) -> dict | None:
    """The settings a marked run was started with (None when the marker holds none)."""
    config = (_marker(folder) or {}).get("config")
    return config if isinstance(config, dict) else None


def foreign_entries(folder: Path, kind: RunKind) -> list[str]:
    """Entries of ``folder`` that a run of ``kind`` does not write."""
    state_tmp = re.compile(r"\.state\.\d{1,10}-[0-9a-f]{8}\.(tmp|old)")
    return sorted(e.name for e in folder.iterdir()
                  if e.name not in kind.outputs and e.name != MARKER
                  and not state_tmp.fullmatch(e.name))


# The files a run writes inside its output folders: records (JSON, JSON lines), arrays (npz),
# tensors (safetensors), plots (png), TensorBoard event files and publish temporaries; and
# PEFT's model card beside saved adapters (``README.md``, recognised by its header).
_OUTPUT_FILE = re.compile(r"[^/]+\.(json|jsonl|npz|safetensors|png|tmp)|events\.out\.tfevents\..+")
_PEFT_CARD = "library_name: peft"


def _written_by_a_run(path: Path) -> bool:
    if path.is_symlink():
        return False  # a run makes no links
    if _OUTPUT_FILE.fullmatch(path.name):
        return True
    if path.name != "README.md":
        return False
    try:
        with path.open(encoding="utf-8") as card:
            return _PEFT_CARD in card.read(4096)
    except (OSError, UnicodeDecodeError):
        return False


def foreign_below(folder: Path, names: Iterable[str], limit: int = 5) -> list[str]:
    """Up to ``limit`` paths (relative to ``folder``) below the output folders ``names`` of
    ``folder`` that no run writes: a user's notes in ``logs/`` must not go with the logs."""
    found: list[str] = []
    for name in sorted(names):
        entry = folder / name
        if entry.is_symlink() or not entry.is_dir():
            continue
        for root, dirs, files in os.walk(entry):  # does not descend into linked folders
            for item in [*dirs, *files]:
                path = Path(root, item)
                if (path.is_symlink() or not path.is_dir()) and not _written_by_a_run(path):
                    found.append(str(path.relative_to(folder)))
                    if len(found) >= limit:
                        return found
    return found


def why_not_run_folder(folder: Path, kind: RunKind, whole: bool = True,
                       names: Iterable[str] | None = None) -> str | None:
    """None when ``folder`` is recognisably a run folder of ``kind``, else the reason.
    ``whole``: the folder itself is to be emptied, so it must hold nothing else either.
    The output folders to be removed (``names``, default all the kind's) may hold only files a
    run writes."""
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
    below = foreign_below(folder, kind.outputs if names is None else set(names) & kind.outputs)
    if below:
        return (f"{folder} holds files a `{kind.name}` run does not write inside its outputs "
                f"({', '.join(below)})")
    return None


def clear_run_folder(folder: Path, kind: RunKind) -> None:
    """Remove what a previous run of ``kind`` wrote in ``folder`` (the folder itself stays);
    FileExistsError, with nothing removed, when it is not recognisably such a run folder."""
    reason = why_not_run_folder(folder, kind)
    if reason is not None:
        raise FileExistsError(f"--overwrite replaces only a run folder of this tool: {reason}; "
                              "choose another --out or remove it yourself")
    for entry in sorted(folder.iterdir()):
        _remove(entry)


def prepare_run_folder(out: str | os.PathLike, overwrite: bool, kind: RunKind,
                       config: dict | None = None) -> Path:
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
    write_marker(folder, kind, config)
    return folder


def write_marker(folder: Path, kind: RunKind, config: dict | None = None) -> None:
    """Mark ``folder`` as a run of ``kind``; ``config``: the settings a resume continues with."""
    marker = {"tool": "sandbox_rl", "kind": kind.name}
    if config is not None:
        marker["config"] = config
    tmp = folder / f"{MARKER}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(marker, default=str) + "\n")
    os.replace(tmp, folder / MARKER)


def remove_outputs(folder: Path, kind: RunKind, names: Iterable[str] | None = None) -> None:
    """Remove the named outputs (default: all) of a recognised run of ``kind`` in ``folder``
    (other entries stay); FileExistsError, with nothing removed, when it is not one."""
    names = kind.outputs if names is None else set(names) & kind.outputs
    reason = why_not_run_folder(folder, kind, whole=False, names=names)
    if reason is not None:
        raise FileExistsError(f"--overwrite replaces only a run folder of this tool: {reason}")
    for name in sorted(names):
        _remove(folder / name)


def _remove(entry: Path) -> None:
    """Remove an entry of a recognised run folder: a folder with its contents, a link itself
    (never what it points to), a file; nothing when it is absent."""
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry)
    elif entry.exists() or entry.is_symlink():
        entry.unlink()


# ----------------------------------------------------------------------------- checkpoints
def checkpoint_name(step: int) -> str:
    return f"step-{step:06d}"


def evolve_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """The saved states an evolve run in ``folder`` can resume from, newest first: its
    checkpoints (``checkpoints/step-XXXXXX``) and its final ``state/``, each with the step its
    manifest records."""
    found = []
    candidates = [folder / "state"]
    try:
        candidates += [e for e in (folder / CHECKPOINTS).iterdir() if _CHECKPOINT.fullmatch(e.name)]
    except OSError:
        pass
    for path in candidates:
        manifest = read_json(path / STATE_MANIFEST) if is_state_folder(path) else None
        step = manifest.get("step") if isinstance(manifest, dict) else None
        if isinstance(step, int) and not isinstance(step, bool) and step >= 0:
            found.append((step, path))
    return sorted(found, key=lambda item: (item[0], item[1].name != "state"), reverse=True)


def prune_checkpoints(folder: Path, keep: int = KEEP_CHECKPOINTS, after: int | None = None
                      ) -> None:
    """In ``folder/checkpoints``: remove all but the newest ``keep`` checkpoints (saved states
    named ``step-XXXXXX``), those of steps after ``after`` (a run resumed from an earlier one
    replaces them), and the temporaries of checkpoint saves whose process is gone."""
    root = folder / CHECKPOINTS
    if not root.is_dir() or root.is_symlink():
        return
    steps = sorted((int(m[1]), e) for e in root.iterdir()
                   if (m := _CHECKPOINT.fullmatch(e.name)) and is_state_folder(e))
    doomed = [e for step, e in steps if after is not None and step > after]
    kept = [e for step, e in steps if e not in doomed]
    doomed += kept[:max(len(kept) - keep, 0)]
    temporary = re.compile(r"\.step-\d{6,15}\.(\d{1,10})-[0-9a-f]{8}\.(tmp|old)")
    for entry in root.iterdir():
        match = temporary.fullmatch(entry.name)
        if match and entry.is_dir() and not entry.is_symlink() and not pid_alive(int(match[1])):
            target = root / entry.name[1:].split(".")[0]
            if match[2] == "tmp" or is_state_folder(target):  # an .old is kept for recovery
                doomed.append(entry)
    for entry in doomed:
        shutil.rmtree(entry, ignore_errors=True)


# Tokens of the publishes running in this process: their temporaries are not stale.
_IN_FLIGHT: set[str] = set()


def publishing(token: str) -> bool:
    """Whether a :func:`publish_folder` of this process with ``token`` is running."""
    return token in _IN_FLIGHT


def publish_folder(target: Path, write: Callable[[Path], None]) -> Path:
    """Replace the folder ``target`` by one ``write(tmp)`` fills, atomically: written beside it
    as ``.<name>.<pid>-<token>.tmp``, then the old one renamed aside (``.old``) and the new one
    in (the old one put back if that fails), the parent folder synced, the old one removed. A
    crash leaves the old or the new folder at ``target``, or (between the renames) the old one
    beside it, where :func:`recover_folder` (or ``core.state.recover`` for a sandbox state) puts
    it back."""
    target = Path(target)
    token = secrets.token_hex(4)
    tmp = target.parent / sibling_name(target.name, os.getpid(), token, "tmp")
    old = target.parent / sibling_name(target.name, os.getpid(), token, "old")
    tmp.mkdir(parents=True)  # raises if the name exists: the cleanup below removes only ours
    _IN_FLIGHT.add(token)
    try:
        write(tmp)
        replaced = target.exists()
        if replaced:
            os.replace(target, old)
        try:
            os.replace(tmp, target)
        except BaseException:
            if replaced:
                try:
                    os.replace(old, target)
                except OSError:
                    pass  # left beside target for the next recover
            raise
        _sync_dir(target.parent)
    finally:
        _IN_FLIGHT.discard(token)
        shutil.rmtree(tmp, ignore_errors=True)
    if replaced:  # the old folder this call moved aside, never another of that name
        shutil.rmtree(old, ignore_errors=True)
    recover_folder(target)  # and remove what dead saves left
    return target


def _sync_dir(folder: Path) -> None:
    """fsync a folder (its renames reach the disk); skipped where the system refuses."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def stale(sibling: Sibling) -> bool:
    """A temporary no running publish owns: its process is gone, or it is this process's and no
    publish of this process holds its token."""
    if sibling.pid == os.getpid():
        return not publishing(sibling.token)
    return not pid_alive(sibling.pid)


def recover_folder(target: Path, clean: bool = True,
                   intact: Callable[[Path], bool] | None = None) -> Path | None:
    """Undo a :func:`publish_folder` that died between its renames and (``clean``) remove the
    temporaries no running publish owns (:func:`stale`).

    With nothing at ``target``, the newest whole folder a dead publish left beside it is put
    back, a moved-aside old one first. A finished temporary qualifies too when ``intact`` can
    tell a whole folder from a half-written one (a sandbox state checks its manifest's
    checksums); without ``intact`` only an old one does, which was whole when it was moved.
    An old one is removed only once a folder is at ``target``: it may be the only copy.
    Returns the path of the sibling put back, if any."""
    target = Path(target)
    left = [s for s in state_siblings(target) if stale(s)]
    restored = None
    if not target.exists() and not target.is_symlink():
        for candidate in sorted(left, key=lambda s: (s.kind == "old", _mtime(s.path)),
                                reverse=True):
            if intact(candidate.path) if intact is not None else candidate.kind == "old":
                os.replace(candidate.path, target)
                left.remove(candidate)
                restored = candidate.path
                break
    if clean:
        for s in left:
            if s.kind == "tmp" or target.exists():
                shutil.rmtree(s.path, ignore_errors=True)
    return restored


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
