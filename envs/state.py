"""Saving, loading and copying the state of an Oasis env, without pickle.

The state of ``OasisParallelEnv`` is a pair ``(meta, arrays)``: ``meta`` is a JSON-serialisable
dict (format version, the env's configuration, step counter, live agents, the numpy generator's
``bit_generator.state`` and a few scalars) and ``arrays`` maps names like ``platform.users.fatigue``
to numpy arrays (users, follower and mute graphs, posts and their texts, the last step's outcome,
the tasks' own state and the current observations). ``env.state_dict()`` returns it and
``env.load_state_dict(meta, arrays)`` validates it whole before touching the env.

On disk a state is a folder with ``env_state.json`` and ``env_state.npz`` (``np.savez``, read back
with ``allow_pickle=False``). In memory, :func:`snapshot` / :func:`restore` copy the arrays.

Not state: the SQLite trace store (a loaded env writes no trace until its next ``reset()``; an
open trace is closed by a load, since its rows describe the world that was replaced), the lazily
loaded text analyser and the tweet corpus (both rebuilt from files), and the render mode.

This module holds the generic checks the domain classes use to validate their part of a state;
it imports nothing from the rest of ``envs`` at module level, so any of them may import it.
"""

from __future__ import annotations

import copy
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, NamedTuple

import numpy as np

from sandbox_rl.validation import Int, InvalidValue, Real, shorten

STATE_FORMAT = "sandbox_rl.oasis_v0.state"
STATE_VERSION = 1
META_FILE = "env_state.json"
ARRAYS_FILE = "env_state.npz"


class ArraySpec(NamedTuple):
    """What one state array must look like.

    ``shape`` entries are ints or symbols; a symbol takes the size first seen and every other
    use must agree (symbols may also be bound in advance, e.g. ``N`` users). ``low`` / ``high``
    bound the values (inclusive / exclusive; ``high`` may be a symbol), checked when not empty.
    ``dtype`` is a numpy dtype name, several joined by ``|``, or ``"U"`` for any unicode dtype.
    """

    dtype: str
    shape: tuple[int | str, ...]
    low: int | None = None
    high: int | str | None = None


def check_arrays(arrays: Mapping[str, Any], specs: Mapping[str, ArraySpec],
                 dims: Mapping[str, int], where: str = "") -> dict[str, int]:
    """Raise ValueError naming the first missing, unexpected, mistyped, misshaped or
    out-of-range array; returns the symbols' sizes."""
    missing = sorted(set(specs) - set(arrays))
    if missing:
        raise ValueError(f"state is missing array(s) {[where + k for k in missing]}")
    unexpected = sorted(set(arrays) - set(specs))
    if unexpected:
        raise ValueError(f"state has unexpected array(s) {[where + k for k in unexpected]}")
    dims = dict(dims)
    for name, spec in specs.items():
        a, label = arrays[name], f"state array {where + name!r}"
        if not isinstance(a, np.ndarray):
            raise ValueError(f"{label} is a {type(a).__name__}, expected a numpy array")
        ok = (a.dtype.kind == "U" if spec.dtype == "U"
              else any(a.dtype == np.dtype(d) for d in spec.dtype.split("|")))
        if not ok:
            raise ValueError(f"{label} has dtype {a.dtype}, expected {spec.dtype}")
        if a.ndim != len(spec.shape):
            raise ValueError(f"{label} has shape {a.shape}, expected {len(spec.shape)} dimension(s)")
        for got, want in zip(a.shape, spec.shape):
            size = dims.setdefault(want, got) if isinstance(want, str) else want
            if got != size:
                raise ValueError(f"{label} has shape {a.shape}, expected {_shape(spec, dims)}")
        high = dims.get(spec.high) if isinstance(spec.high, str) else spec.high
        if a.size and ((spec.low is not None and a.min() < spec.low)
                       or (high is not None and a.max() >= high)):
            raise ValueError(f"{label} has values in [{a.min()}, {a.max()}], expected within "
                             f"[{spec.low}, {high})")
    return dims


def _shape(spec: ArraySpec, dims: Mapping[str, int]) -> tuple:
    return tuple(dims.get(s, s) if isinstance(s, str) else s for s in spec.shape)


def split_arrays(arrays: Mapping[str, Any], prefixes: Iterable[str],
                 where: str = "") -> dict[str, dict[str, Any]]:
    """Group ``arrays`` by name prefix (``"users."`` ...; ``""`` takes names without a dot),
    stripping it; a name under no prefix is a ValueError."""
    groups: dict[str, dict[str, Any]] = {p: {} for p in prefixes}
    for name, value in arrays.items():
        head, dot, _ = name.partition(".")
        prefix = head + dot if dot else ""
        if prefix not in groups:
            raise ValueError(f"state has unexpected array {where + name!r}")
        groups[prefix][name[len(prefix):]] = value
    return groups


def prefixed(prefix: str, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {prefix + k: v for k, v in arrays.items()}


def check_keys(meta: Any, keys: Iterable[str], where: str) -> None:
    """``meta`` must be a dict with exactly ``keys``."""
    if not isinstance(meta, dict):
        raise ValueError(f"state field {where!r} must be a dict, got {type(meta).__name__}")
    keys = set(keys)
    if set(meta) != keys:
        raise ValueError(f"state field {where!r} has keys {sorted(meta)}, expected {sorted(keys)}")


def check_int(value: Any, where: str, low: int, high: int | None = None) -> int:
    """An int in ``[low, high)`` (``high`` None: unbounded)."""
    if not Int(low, None if high is None else high - 1, numpy=False).accepts(value):
        _refuse(where, value, f"an int in [{low}, {'inf' if high is None else high})")
    return value


def check_float(value: Any, where: str, low: float, high: float) -> float:
    if not Real(low, high, numpy=False).accepts(value):
        _refuse(where, value, f"a number in [{low}, {high}]")
    return float(value)


def _refuse(where: str, value: Any, expected: str) -> None:
    """InvalidValue (a ValueError) naming the state field, in the state checks' wording."""
    raise InvalidValue(where, value, expected,
                       message=f"state field {where!r} is {shorten(value)}, expected {expected}")


# ---------------------------------------------------------------------- disk
def save_env_state(env, directory: str | os.PathLike) -> Path:
    """Write ``env``'s state to ``directory/env_state.json`` and ``directory/env_state.npz``."""
    meta, arrays = env.state_dict()
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    # Write beside, then rename: a crash mid-save leaves the previous state readable.
    tmp_json, tmp_npz = folder / (META_FILE + ".tmp"), folder / (ARRAYS_FILE + ".tmp.npz")
    tmp_json.write_text(json.dumps(meta, indent=1), encoding="utf-8")
    np.savez(tmp_npz, **arrays)
    os.replace(tmp_npz, folder / ARRAYS_FILE)
    os.replace(tmp_json, folder / META_FILE)
    return folder


def read_env_state(directory: str | os.PathLike) -> tuple[dict, dict[str, np.ndarray]]:
    """The ``(meta, arrays)`` saved in ``directory``; ValueError naming a missing or corrupt file."""
    folder = Path(directory)
    meta_path, arrays_path = folder / META_FILE, folder / ARRAYS_FILE
    for path in (meta_path, arrays_path):
        if not path.is_file():
            raise ValueError(f"no saved env state: {path} is missing")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"corrupt env state file {meta_path}: {err}") from None
    try:
        with np.load(arrays_path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"corrupt env state file {arrays_path}: {err}") from None
    return meta, arrays


def load_env_state(env, directory: str | os.PathLike) -> None:
    """Load the state saved by :func:`save_env_state` into ``env`` (validated first: a bad
    state raises ValueError and leaves ``env`` as it was)."""
    env.load_state_dict(*read_env_state(directory))


# ---------------------------------------------------------------------- memory
@dataclass(frozen=True, eq=False)  # identity equality and hash: snapshots are compared by id
class EnvSnapshot:
    """An in-memory copy of an env's state; its arrays are read-only and never alias an env."""

    meta: dict
    arrays: dict[str, np.ndarray]

    @property
    def step(self) -> int:
        return self.meta["num_cycles"]


def snapshot(env) -> EnvSnapshot:
    """A copy of ``env``'s state, to :func:`restore` into it or into any env of the same config."""
    meta, arrays = env.state_dict()  # state_dict copies the arrays already
    for a in arrays.values():
        a.flags.writeable = False
    return EnvSnapshot(copy.deepcopy(meta), arrays)


def restore(env, snap: EnvSnapshot) -> None:
    """Put ``env`` back in the state of ``snap`` (it may be restored any number of times)."""
    env.load_state_dict(snap.meta, snap.arrays)
