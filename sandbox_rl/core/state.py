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
    adapters/<model>/       PEFT adapters of each base model (PEFT's own format)
    prefix_cache/<model>/   the system-prompt prefix caches, per adapter (safetensors)

A save is written to a temporary directory beside the target and renamed into place, so an
interrupted save leaves the previous state (or nothing), never half of one. A load reads and
checks every file, builds the new models, adapters and env aside, and only then swaps them into
the sandbox; any problem leaves the sandbox as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file

from sandbox_rl.core.pool import slug

if TYPE_CHECKING:
    from sandbox_rl.core.self_evolving_oasis import SelfEvolvingOasis

FORMAT = "sandbox_rl.self_evolving_oasis"
VERSION = 1


class StateError(ValueError):
    """A state directory is missing, corrupt or incompatible; the message says which part."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------- save
def save(sandbox: "SelfEvolvingOasis", path: str | os.PathLike) -> Path:
    from sandbox_rl.envs.state import save_env_state

    target = Path(path).absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        llm = sandbox.evolving_llm
        (tmp / "config.json").write_text(json.dumps(sandbox.config.to_json(), indent=1))
        meta, tensors = llm.strategy.state_dict()
        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        tensors["rng/torch"] = torch.get_rng_state()
        save_file(tensors, str(tmp / "tensors.safetensors"))
        snapshots = _save_snapshots(llm, tmp / "snapshots")
        body = {"step_count": sandbox.step_count, "llm": llm.state_json(snapshots),
                "strategy": meta}
        (tmp / "sandbox.json").write_text(json.dumps(body, default=float))
        save_env_state(sandbox.env, tmp / "env")
        for name, group in llm.groups.items():
            if group.adapters is not None:
                group.adapters.save(tmp / "adapters" / slug(name))
        for name, store in llm.prefix_stores.items():
            for key, prefix in store.items():
                prefix.save(tmp / "prefix_cache" / slug(name) / f"{key}.safetensors")
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        manifest = {"format": FORMAT, "version": VERSION, "step": sandbox.step_count,
                    "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "files": {str(p.relative_to(tmp)): sha256(p) for p in files}}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        _publish(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _save_snapshots(llm, folder: Path) -> dict[int, int]:
    """Each distinct snapshot of the gathered tuples once; returns id(snapshot) -> index."""
    import numpy as np

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


def _publish(tmp: Path, target: Path) -> None:
    """Move the finished state into place; an old state is removed only after the new one is."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------- load
def read_verified(path: str | os.PathLike) -> tuple[Path, dict]:
    """The state folder and its manifest, after checking format, version and every checksum."""
    folder = Path(path)
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise StateError(f"no saved state at {folder} (manifest.json missing)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise StateError(f"corrupt manifest {manifest_path}: {err}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise StateError(f"{manifest_path} is not a {FORMAT} state")
    if manifest.get("version") != VERSION:
        raise StateError(f"state version {manifest.get('version')!r} is not supported "
                         f"(this version reads {VERSION})")
    for name, digest in manifest.get("files", {}).items():
        file = folder / name
        if not file.is_file():
            raise StateError(f"state file {name} is missing")
        if sha256(file) != digest:
            raise StateError(f"state file {name} is corrupt (checksum mismatch)")
    for required in ("config.json", "sandbox.json", "tensors.safetensors"):
        if required not in manifest.get("files", {}):
            raise StateError(f"state has no {required}")
    return folder, manifest


def read_parts(folder: Path) -> dict[str, Any]:
    """Parse every part of a verified state (nothing is applied)."""
    from sandbox_rl.core.config import SelfEvolvingConfig
    from sandbox_rl.envs.state import EnvSnapshot, read_env_state

    try:
        config = SelfEvolvingConfig.from_json(json.loads((folder / "config.json").read_text()))
    except ValueError as err:
        raise StateError(f"config.json: {err}") from None
    body = json.loads((folder / "sandbox.json").read_text())
    try:
        tensors = load_file(str(folder / "tensors.safetensors"))
    except Exception as err:  # safetensors raises its own error types
        raise StateError(f"tensors.safetensors: {err}") from None
    env_meta, env_arrays = read_env_state(folder / "env")
    snapshots = []
    snap_dir = folder / "snapshots"
    for i in range(len(list(snap_dir.iterdir())) if snap_dir.is_dir() else 0):
        meta, arrays = _read_snapshot(snap_dir / str(i))
        snapshots.append(EnvSnapshot(meta, arrays))
    return {"config": config, "body": body, "tensors": tensors, "env": (env_meta, env_arrays),
            "snapshots": snapshots}


def _read_snapshot(sub: Path):
    import numpy as np

    meta = json.loads((sub / "meta.json").read_text())
    with np.load(sub / "arrays.npz", allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    for a in arrays.values():
        a.flags.writeable = False
    return meta, arrays
