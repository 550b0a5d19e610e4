"""Saving and loading a whole sandbox: one versioned directory, no pickle.

Layout of a state directory::

    manifest.json           format, version, step, sha256 of every other file
    config.json             the SelfEvolvingConfig
    sandbox.json            counters, members and their reward histories, performance
                            histories, evolution events, strategy metadata, gathered tuples
    tensors.safetensors     strategy tensors (optimiser states, meta-initialisation) and the
                            torch RNG state
    env/                    the env state (envs/state.py: JSON + npz)
    snapshots/<i>/          env snapshots the gathered tuples are scored against
    adapters/<model>/       PEFT adapters of each base model (PEFT's own format) and the
                            answer format each task adapter was trained for
    prefix_cache/<model>/   the system-prompt prefix caches, per adapter (safetensors)

A save replaces only a state it wrote (a folder with this format's manifest and no file the
manifest does not list) or an empty folder; anything else (``''``, ``.``, a folder of the user's,
a file) is refused. It is written to ``.<name>.<pid>-<token>.tmp`` beside the target and
published by two renames: the old state to ``.<name>.<pid>-<token>.old``, the new one into
place. A save killed between them leaves the old state beside the target, where the next
``load_state`` or ``save_state`` of that target puts it back (when the process that wrote it is
gone); the next save also removes the temporaries of dead saves.

A load (:func:`load`, the mirror of :func:`save`) checks the manifest (format, version,
relative paths inside the folder only, no file left unlisted, no link), every checksum, and
every value against its type and range, and builds the new models, adapters and env aside
(:class:`LoadedState`); the sandbox only swaps them in. Any problem raises before anything live
changes: the sandbox, and the global torch RNG, stay as they were.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import stat
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from sandbox_rl.core.config import SelfEvolvingConfig
from sandbox_rl.core.evolving_llm import SelfEvolvingLLM
from sandbox_rl.core.experience import Scorer
from sandbox_rl.core.pool import RECENT, slug
from sandbox_rl.core.world import new_env
from sandbox_rl.enums import TaskType
from sandbox_rl.envs.state import EnvSnapshot, read_env_state, save_env_state
from sandbox_rl.run_folders import (STATE_FORMAT, STATE_MANIFEST, is_state_folder,
                                    publish_folder, recover_folder)

if TYPE_CHECKING:  # the facade imports this module: a real cycle, for the annotation only
    from sandbox_rl.core.self_evolving_oasis import SelfEvolvingOasis

log = logging.getLogger(__name__)

FORMAT = STATE_FORMAT
VERSION = 1
MANIFEST = STATE_MANIFEST
# Every file a state may hold (paths relative to the state folder, '/'-separated).
LAYOUT = tuple(re.compile(p) for p in (
    r"config\.json", r"sandbox\.json", r"tensors\.safetensors",
    r"env/env_state\.json", r"env/env_state\.npz",
    r"snapshots/(0|[1-9][0-9]{0,8})/(meta\.json|arrays\.npz)",
    r"adapters/[^/]+/README\.md", r"adapters/[^/]+/answer_formats\.json",
    r"adapters/[^/]+/[^/]+/(adapter_config\.json|adapter_model\.safetensors)",
    r"prefix_cache/[^/]+/[^/]+\.safetensors"))
REQUIRED = ("config.json", "sandbox.json", "tensors.safetensors", "env/env_state.json",
            "env/env_state.npz")
MAX_INT = 2**53  # counters and steps: exact in JSON and in float64
MAX_TEMPERATURE = 10.0
MAX_LORA_RANK = 1024


class StateError(ValueError):
    """A state directory is missing, corrupt or incompatible; the message says which part."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _short(text: Any, limit: int = 80) -> str:
    text = str(text)
    return repr(text if len(text) <= limit else text[:limit] + "...")


def state_path(path: Any, saving: bool = False) -> Path:
    """The absolute state folder named by ``path``; StateError for anything but a non-empty
    str / PathLike, and (``saving``) for the working directory, one of its parents or a link."""
    if not isinstance(path, (str, os.PathLike)):
        raise StateError(f"a state path must be a str or os.PathLike, got {type(path).__name__}")
    raw = os.fspath(path)
    raw = os.fsdecode(raw) if isinstance(raw, bytes) else raw
    if not isinstance(raw, str) or not raw.strip() or "\0" in raw:
        raise StateError(f"a state path must name a folder, got {_short(raw)}")
    target = Path(os.path.abspath(raw))
    if saving:
        here = Path.cwd()
        if target == here or target in here.parents:
            raise StateError(f"{_short(raw)} is the working directory or one of its parents; "
                             "save_state writes a folder of its own (e.g. 'state')")
        if target.is_symlink():
            raise StateError(f"{target} is a link; save_state replaces only a folder it wrote")
    return target


# ----------------------------------------------------------------------------- save
def save(sandbox: "SelfEvolvingOasis", path: Any) -> Path:
    target = state_path(path, saving=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover(target, clean=True)
    check_replaceable(target)
    return publish_folder(target, lambda tmp: _write(sandbox, tmp))


def _write(sandbox: "SelfEvolvingOasis", tmp: Path) -> None:
    llm = sandbox.evolving_llm
    (tmp / "config.json").write_text(json.dumps(sandbox.config.to_json(), indent=1))
    meta, tensors = llm.strategy.state_dict()
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    tensors["rng/torch"] = torch.get_rng_state()
    save_file(tensors, str(tmp / "tensors.safetensors"))
    snapshots = _save_snapshots(llm, tmp / "snapshots")
    body = {"step_count": sandbox.step_count, "llm": llm.state_json(snapshots), "strategy": meta}
    (tmp / "sandbox.json").write_text(json.dumps(body, default=float))
    save_env_state(sandbox.env, tmp / "env")
    for name, group in llm.groups.items():
        if group.adapters is not None:
            group.adapters.save(tmp / "adapters" / slug(name))
    for name, store in llm.prefix_stores.items():
        for key, prefix in store.items():
            prefix.save(tmp / "prefix_cache" / slug(name) / f"{key}.safetensors")
    files, odd = _walk(tmp)
    if odd:
        raise StateError(f"the state written holds a link or special file {_short(odd[0])}")
    manifest = {"format": FORMAT, "version": VERSION, "step": sandbox.step_count,
                "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "files": {name: _sha256_synced(tmp / name) for name in sorted(files)}}
    with open(tmp / MANIFEST, "w") as f:  # written last: a state with a manifest is whole
        f.write(json.dumps(manifest, indent=1))
        f.flush()
        os.fsync(f.fileno())


def _sha256_synced(path: Path) -> str:
    """The checksum, after the file reached the disk (a power cut cannot undo a published save)."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())
    return sha256(path)


def _save_snapshots(llm, folder: Path) -> dict[int, int]:
    """Each distinct snapshot of the gathered tuples once; returns id(snapshot) -> index."""
    index: dict[int, int] = {}
    for exp in llm.experiences:
        snap = exp.snapshot
        if snap is None or id(snap) in index:
            continue
        index[id(snap)] = i = len(index)
        sub = folder / str(i)
        sub.mkdir(parents=True)
        (sub / "meta.json").write_text(json.dumps(snap.meta))
        np.savez(sub / "arrays.npz", **snap.arrays)
    return index


def check_replaceable(target: Path) -> None:
    """StateError unless ``target`` is absent, an empty folder, or a state this module wrote
    that holds nothing its manifest does not list."""
    if not target.exists():
        return
    if not target.is_dir():
        raise StateError(f"{target} exists and is not a folder; save_state replaces only a "
                         "state it wrote")
    if not any(target.iterdir()):
        return
    if not is_state_folder(target):
        raise StateError(f"{target} is a folder but not a saved state (no {FORMAT} manifest); "
                         "save_state replaces only a state it wrote")
    listed = json.loads((target / MANIFEST).read_text(encoding="utf-8")).get("files")
    files, odd = _walk(target)
    extra = sorted(files - set(listed if isinstance(listed, dict) else ()) - {MANIFEST}) + odd
    if extra:
        raise StateError(f"{target} holds files its manifest does not list ({_short(extra[0])}"
                         f"{f' and {len(extra) - 1} more' if len(extra) > 1 else ''}); "
                         "save_state replaces only a state it wrote")


def recover(target: Path, clean: bool = False) -> None:
    """Undo a save killed between the renames of its publish step: with no state at
    ``target``, put back the newest whole state (its checksums verified) a dead save left
    beside it, the moved-aside old one first. ``clean``: then remove the other temporaries of
    dead saves (``run_folders.recover_folder``, the rule every published folder follows)."""
    restored = recover_folder(target, clean, intact=_intact)
    if restored is not None:
        log.warning("restored the state at %s from %s, left by an interrupted save",
                    target, restored.name)


def _intact(folder: Path) -> bool:
    try:
        verify(folder)
    except (ValueError, OSError):  # StateError is a ValueError
        return False
    return True


def _walk(folder: Path) -> tuple[set[str], list[str]]:
    """The regular files under ``folder`` ('/'-separated relative names), and any link or
    special file (which a state never holds); links are not followed."""
    files, odd = set(), []
    for root, dirs, names in os.walk(folder, followlinks=False):
        rel = Path(root).relative_to(folder)
        for name in dirs:
            if os.path.islink(os.path.join(root, name)):
                odd.append((rel / name).as_posix())
        for name in names:
            mode = os.lstat(os.path.join(root, name)).st_mode
            (files.add if stat.S_ISREG(mode) else odd.append)((rel / name).as_posix())
    return files, sorted(odd)


# ----------------------------------------------------------------------------- load
def read_verified(path: Any) -> tuple[Path, dict]:
    """The state folder and its manifest, after recovering an interrupted save of it and
    checking format, version, the listed paths and every checksum."""
    folder = state_path(path)
    recover(folder)
    return folder, verify(folder)


def verify(folder: Path) -> dict:
    """The manifest of the state in ``folder``, every file checked (StateError otherwise)."""
    manifest_path = folder / MANIFEST
    if not folder.is_dir() or manifest_path.is_symlink() or not manifest_path.is_file():
        raise StateError(f"no saved state at {folder} (manifest.json missing)")
    manifest = _json(manifest_path, "manifest.json")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise StateError(f"{manifest_path} is not a {FORMAT} state")
    if manifest.get("version") != VERSION:
        raise StateError(f"state version {_short(manifest.get('version'))} is not supported "
                         f"(this version reads {VERSION})")
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise StateError("manifest.json: 'files' must be a mapping path -> sha256, got "
                         f"{type(files).__name__}")
    check_int(manifest.get("step"), "manifest.json: step")
    for name, digest in files.items():
        check_listed(name, digest)
    present, odd = _walk(folder)
    if odd:
        raise StateError(f"state folder holds a link or special file {_short(odd[0])}")
    for required in REQUIRED:
        if required not in files:
            raise StateError(f"state has no {required}")
    missing = sorted(set(files) - present)
    if missing:
        raise StateError(f"state file {_short(missing[0])} is missing")
    unlisted = sorted(present - set(files) - {MANIFEST})
    if unlisted:
        raise StateError(f"state folder holds {len(unlisted)} file(s) its manifest does not "
                         f"list (first {_short(unlisted[0])}): refused, since they are unverified")
    _check_snapshot_files(files)
    for name in sorted(files):
        if sha256(folder / name) != files[name]:
            raise StateError(f"state file {_short(name)} is corrupt (checksum mismatch)")
    return manifest


def check_listed(name: Any, digest: Any) -> None:
    """A manifest entry: a normalised relative path inside the state folder that the layout
    allows, and a sha256 hex digest (checked before any file is opened)."""
    if not isinstance(name, str) or not name or len(name) > 1024:
        raise StateError(f"manifest lists an invalid path {_short(name)}")
    parts = PurePosixPath(name).parts
    if (name.startswith("/") or "\\" in name or "\0" in name or ".." in parts
            or "/".join(parts) != name or re.match(r"[A-Za-z]:", name)):
        raise StateError(f"manifest lists the path {_short(name)}: only relative paths inside "
                         "the state folder are valid")
    if not any(p.fullmatch(name) for p in LAYOUT):
        raise StateError(f"manifest lists {_short(name)}, which is not a file of a state")
    if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise StateError(f"manifest: the checksum of {_short(name)} is not a sha256 digest")


def _check_snapshot_files(files: Mapping[str, str]) -> None:
    indices = {int(n.split("/")[1]) for n in files if n.startswith("snapshots/")}
    for i in range(len(indices)):
        for part in ("meta.json", "arrays.npz"):
            if f"snapshots/{i}/{part}" not in files:
                raise StateError(f"state has no snapshots/{i}/{part} (snapshots are numbered "
                                 f"0..{len(indices) - 1})")


def _json(path: Path, label: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise StateError(f"{label} is not valid JSON: {str(err)[:200]}") from None


@dataclass(frozen=True)
class StateParts:
    """The parsed and checked files of a verified state (:func:`read_parts`), nothing built."""

    config: SelfEvolvingConfig
    body: dict[str, Any]  # sandbox.json
    tensors: dict[str, torch.Tensor]  # tensors.safetensors (strategy tensors, rng/torch)
    env: tuple[dict, dict[str, np.ndarray]]  # the env state's (meta, arrays)
    snapshots: list[EnvSnapshot]


@dataclass
class LoadedState:
    """A saved sandbox read back and built aside by :func:`load`: the parts the sandbox swaps
    in for its own, all checked and consistent with each other."""

    config: SelfEvolvingConfig
    env: Any  # the Oasis parallel env (``world.new_env``) holding the saved env state
    llm: SelfEvolvingLLM  # models, adapters, prefix caches, members, tuples, strategy state
    step_count: int
    rng: torch.Tensor  # the global torch RNG state to restore (checked by ``check_rng``)


def load(path: Any, scorer: Scorer, keep: Mapping[str, Any] | None = None) -> LoadedState:
    """The state saved at ``path`` (the mirror of :func:`save`): an interrupted save of it is
    recovered, the manifest, every checksum and every value checked, and the replacement
    config, env and LLM built aside, the LLM scoring through ``scorer`` (the sandbox that will
    hold them). ``keep``: see :func:`read_parts`. Nothing live changes, whatever is raised
    (StateError for what the checks find), and the global torch RNG is left where it was."""
    folder, _ = read_verified(path)
    parts = read_parts(folder, keep)
    # Building aside draws from the global RNG; a refused state must not move it.
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=cuda):
        return _build(folder, parts, scorer)


def _build(folder: Path, parts: StateParts, scorer: Scorer) -> LoadedState:
    """New env, LLM and strategy holding the saved state; nothing live touched."""
    config = parts.config
    env = new_env(config)
    env.load_state_dict(*parts.env)
    for i, snap in enumerate(parts.snapshots):
        try:  # the same full check the counterfactual scorer makes before using one
            env._check_state(snap.meta, snap.arrays)
        except ValueError as err:
            raise StateError(f"snapshots/{i}: {err}") from None
    llm = SelfEvolvingLLM(config, scorer=scorer, start_adapters=False)
    for name, group in llm.groups.items():
        if group.adapters is not None:
            group.adapters.load(folder / "adapters" / slug(name))
    for name, group in llm.groups.items():
        saved = folder / "prefix_cache" / slug(name)
        for path in sorted(saved.glob("*.safetensors")) if saved.is_dir() else []:
            llm.prefix_store(group).restore(path.stem, path)
    llm.load_state_json(parts.body["llm"], parts.snapshots)
    llm.strategy.load_state_dict(parts.body["strategy"], parts.tensors)
    return LoadedState(config, env, llm, int(parts.body["step_count"]),
                       parts.tensors["rng/torch"])  # checked by read_parts


def read_parts(folder: Path, keep: Mapping[str, Any] | None = None) -> StateParts:
    """Parse and check every part of a verified state (nothing is built). ``keep``: config
    fields of the live sandbox that the state's config does not override (``log_dir``: a
    state does not choose where the sandbox writes; ``device``: a state saved on a GPU loads on
    a CPU machine)."""
    config = _read_config(folder, keep or {})
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    snapshots = [_read_snapshot(folder, i) for i in
                 range(len({f.split("/")[1] for f in files if f.startswith("snapshots/")}))]
    body = _json(folder / "sandbox.json", "sandbox.json")
    check_body(body, config, len(snapshots))
    tensors = _read_tensors(folder / "tensors.safetensors", "tensors.safetensors")
    check_rng(tensors.get("rng/torch"))
    for name in files:
        if name.startswith("adapters/") and name.endswith("adapter_config.json"):
            check_adapter_config(_json(folder / name, name), name)
        elif name.endswith(".safetensors") and name != "tensors.safetensors":
            _read_tensors(folder / name, name)  # checked only: PEFT and the caches read them
    try:
        env = read_env_state(folder / "env")
    except (ValueError, OSError) as err:
        raise StateError(f"env: {str(err)[:300]}") from None
    saved_env = env[0].get("env") if isinstance(env[0], dict) else None
    users = saved_env.get("num_users") if isinstance(saved_env, dict) else None
    if users != config.num_users:  # checked before an env of that size is built
        raise StateError(f"env/env_state.json: num_users is {_short(users)}, config.json says "
                         f"{config.num_users}")
    return StateParts(config, body, tensors, env, snapshots)


def _read_config(folder: Path, keep: Mapping[str, Any]) -> SelfEvolvingConfig:
    data = _json(folder / "config.json", "config.json")
    if not isinstance(data, dict):
        raise StateError(f"config.json must hold an object, got {type(data).__name__}")
    log_dir = keep.get("log_dir")
    if log_dir is not None and not isinstance(log_dir, (str, os.PathLike)):
        raise StateError(f"log_dir must be a path, got {type(log_dir).__name__}")
    data = {**data, **{k: os.fspath(v) if k == "log_dir" else v for k, v in keep.items()}}
    try:
        return SelfEvolvingConfig.from_json(data)
    except (TypeError, ValueError, AttributeError) as err:
        raise StateError(f"config.json: {str(err)[:300]}") from None


def _read_tensors(path: Path, label: str) -> dict[str, torch.Tensor]:
    """A safetensors file whose floating-point tensors are all finite."""
    try:
        tensors = load_file(str(path))
    except Exception as err:  # safetensors raises its own error types
        raise StateError(f"{label}: {str(err)[:200]}") from None
    for key, value in tensors.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise StateError(f"{label}: tensor {_short(key)} holds NaN or infinite values")
    return tensors


def _read_snapshot(folder: Path, i: int) -> EnvSnapshot:
    sub, label = folder / "snapshots" / str(i), f"snapshots/{i}"
    meta = _json(sub / "meta.json", f"{label}/meta.json")
    if not isinstance(meta, dict):
        raise StateError(f"{label}/meta.json must hold an object")
    try:
        with np.load(sub / "arrays.npz", allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as err:
        raise StateError(f"{label}/arrays.npz is not a valid npz: {str(err)[:200]}") from None
    for a in arrays.values():
        a.flags.writeable = False
    return EnvSnapshot(meta, arrays)


def check_rng(rng: Any) -> None:
    """A state torch accepts for its CPU generator (tried on a forked RNG, so nothing moves)."""
    size = torch.get_rng_state().numel()
    if not isinstance(rng, torch.Tensor) or rng.dtype != torch.uint8 or rng.dim() != 1 \
            or rng.numel() != size:
        got = "nothing" if rng is None else f"{getattr(rng, 'dtype', type(rng).__name__)} " \
                                             f"{tuple(getattr(rng, 'shape', ()))}"
        raise StateError(f"tensors.safetensors: rng/torch is {got}, expected a uint8 torch RNG "
                         f"state of {size} bytes")
    with torch.random.fork_rng(devices=[]):
        try:
            torch.set_rng_state(rng)
        except RuntimeError as err:
            raise StateError(f"tensors.safetensors: rng/torch is not a valid torch RNG state "
                             f"({err})") from None


def check_adapter_config(data: Any, where: str) -> None:
    if not isinstance(data, dict) or data.get("peft_type") != "LORA":
        raise StateError(f"{where}: not a PEFT LoRA adapter config")
    check_int(data.get("r"), f"{where}: r", 1, MAX_LORA_RANK)
    check_number(data.get("lora_alpha"), f"{where}: lora_alpha", 0, math.inf, open_low=True)
    check_number(data.get("lora_dropout"), f"{where}: lora_dropout", 0, 1)
    modules = data.get("target_modules")
    if not isinstance(modules, list) or not modules or \
            not all(isinstance(m, str) for m in modules):
        raise StateError(f"{where}: target_modules must be a list of module names")


# ----------------------------------------------------------------------------- values
def check_int(value: Any, where: str, low: int = 0, high: int = MAX_INT) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise StateError(f"{where} is {_short(value)}, expected an integer in [{low}, {high}]")
    return value


def check_number(value: Any, where: str, low: float = -math.inf, high: float = math.inf,
                 open_low: bool = False, open_high: bool = False) -> float:
    ok = (not isinstance(value, bool) and isinstance(value, (int, float))
          and math.isfinite(value) and (value > low if open_low else value >= low)
          and (value < high if open_high else value <= high))
    if not ok:
        raise StateError(f"{where} is {_short(value)}, expected a finite number in "
                         f"{'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}")
    return float(value)


def _dict(value: Any, where: str, keys: set[str] | None = None) -> dict:
    if not isinstance(value, dict):
        raise StateError(f"{where} must be an object, got {type(value).__name__}")
    if keys is not None and set(value) != keys:
        raise StateError(f"{where} has keys {_short(sorted(map(str, value)), 200)}, expected "
                         f"{sorted(keys)}")
    return value


def _list(value: Any, where: str) -> list:
    if not isinstance(value, list):
        raise StateError(f"{where} must be a list, got {type(value).__name__}")
    return value


def _str(value: Any, where: str, optional: bool = False) -> None:
    if not (isinstance(value, str) or (optional and value is None)):
        raise StateError(f"{where} is {_short(value)}, expected a string"
                         f"{' or null' if optional else ''}")


BODY_KEYS = {"step_count", "llm", "strategy"}
LLM_KEYS = {"evolution_step", "env_steps", "generate_calls", "events", "performance", "members",
            "experiences", "pending"}
MEMBER_KEYS = {"index", "adapter", "temperature", "generation", "pulls", "recent",
               "total_reward"}
EXPERIENCE_KEYS = {"task", "adapter", "step", "observation", "prompt", "completion", "reward",
                   "actions", "snapshot"}


def check_body(body: Any, config, snapshots: int) -> None:
    """``sandbox.json``: every value of the type and range the sandbox gives it."""
    tasks = {t.value for t in TaskType}
    _dict(body, "sandbox.json", BODY_KEYS)
    check_int(body["step_count"], "sandbox.json: step_count")
    llm = _dict(body["llm"], "sandbox.json: llm", LLM_KEYS)
    for key in ("evolution_step", "env_steps", "generate_calls"):
        check_int(llm[key], f"sandbox.json: llm.{key}")
    for i, event in enumerate(_list(llm["events"], "sandbox.json: llm.events")):
        _dict(event, f"sandbox.json: llm.events[{i}]")
    _dict(llm["performance"], "sandbox.json: llm.performance", tasks)
    for task, scores in llm["performance"].items():
        for i, r in enumerate(_list(scores, f"sandbox.json: llm.performance.{task}")):
            check_number(r, f"sandbox.json: llm.performance.{task}[{i}]")
    _dict(llm["members"], "sandbox.json: llm.members", tasks)
    for task, members in llm["members"].items():
        where = f"sandbox.json: llm.members.{task}"
        if len(_list(members, where)) != config.model_pool_size:
            raise StateError(f"{where} has {len(members)} members, expected model_pool_size="
                             f"{config.model_pool_size}")
        for i, member in enumerate(members):
            check_member(member, i, f"{where}[{i}]")
    for i, item in enumerate(_list(llm["experiences"], "sandbox.json: llm.experiences")):
        check_experience(item, tasks, snapshots, f"sandbox.json: llm.experiences[{i}]")
    for adapter, items in _dict(llm["pending"], "sandbox.json: llm.pending").items():
        for i, item in enumerate(_list(items, f"sandbox.json: llm.pending.{adapter}")):
            check_experience(item, tasks, snapshots, f"sandbox.json: llm.pending.{adapter}[{i}]")
    check_strategy(body["strategy"], config)


def check_member(member: Any, index: int, where: str) -> None:
    _dict(member, where, MEMBER_KEYS)
    if check_int(member["index"], f"{where}.index") != index:
        raise StateError(f"{where}.index is {member['index']}, expected {index}")
    _str(member["adapter"], f"{where}.adapter", optional=True)
    check_number(member["temperature"], f"{where}.temperature", 0, MAX_TEMPERATURE,
                 open_low=True)
    check_int(member["generation"], f"{where}.generation")
    check_int(member["pulls"], f"{where}.pulls")
    recent = _list(member["recent"], f"{where}.recent")
    if len(recent) > RECENT:
        raise StateError(f"{where}.recent holds {len(recent)} rewards, at most {RECENT} kept")
    for i, r in enumerate(recent):
        check_number(r, f"{where}.recent[{i}]")
    check_number(member["total_reward"], f"{where}.total_reward")


def check_experience(item: Any, tasks: set[str], snapshots: int, where: str) -> None:
    _dict(item, where, EXPERIENCE_KEYS)
    if item["task"] not in tasks:
        raise StateError(f"{where}.task is {_short(item['task'])}, expected one of "
                         f"{sorted(tasks)}")
    _str(item["adapter"], f"{where}.adapter", optional=True)
    check_int(item["step"], f"{where}.step")
    for key in ("observation", "prompt", "completion"):
        _str(item[key], f"{where}.{key}")
    check_number(item["reward"], f"{where}.reward")
    for agent, text in _dict(item["actions"], f"{where}.actions").items():
        _str(text, f"{where}.actions.{agent}", optional=True)
    if item["snapshot"] is not None:
        check_int(item["snapshot"], f"{where}.snapshot", 0, snapshots - 1)


def check_strategy(meta: Any, config) -> None:
    where = "sandbox.json: strategy"
    _dict(meta, where)
    kind = config.evolution_strategy.value
    if meta.get("kind") != kind:
        raise StateError(f"{where}.kind is {_short(meta.get('kind'))}, expected {kind!r} "
                         "(the state's evolution_strategy)")
    check_int(meta.get("online_updates"), f"{where}.online_updates")
    for key, value in meta.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            check_number(value, f"{where}.{key}")
