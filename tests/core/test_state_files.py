"""save_state / load_state against bad paths, crashes and crafted (re-hashed) state files.

A crafted state is a saved one whose files were changed and whose manifest was written again
with the new checksums, so only the value checks stand between it and the sandbox. Every bad
state must give False with a logged reason, leave the sandbox and the global torch RNG as they
were, and never raise.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import sandbox_rl.core.state as state_io
from sandbox_rl.core.self_evolving_oasis import TaskType, create_self_evolving_oasis

TINY = {t: "tiny-llama" for t in TaskType}


def _sandbox(tmp_path, **overrides):
    fields = dict(task_distribution=TINY, fallback_model=None, num_users=200, model_pool_size=2,
                  evolution_interval=2, log_dir=str(tmp_path / "logs"))
    fields.update(overrides)
    return create_self_evolving_oasis(**fields)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A state with gathered tuples and their snapshots (each test changes its own copy)."""
    folder = tmp_path_factory.mktemp("saved")
    sandbox = _sandbox(folder, seed=3)
    for _ in range(2):
        sandbox.simulate_step()
    assert sandbox.save_state(folder / "state")
    sandbox.close()
    return folder / "state"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """The sandbox the bad states are offered to (a refused load leaves it as it is)."""
    folder = tmp_path_factory.mktemp("live")
    sandbox = _sandbox(folder, seed=5)
    sandbox.simulate_step()
    return sandbox


@pytest.fixture
def state(tmp_path, saved):
    copy = tmp_path / "state"
    shutil.copytree(saved, copy)
    return copy


def rehash(state: Path, drop: tuple[str, ...] = ()) -> None:
    """Write the manifest again for the files now in ``state`` (less ``drop``)."""
    manifest = json.loads((state / "manifest.json").read_text())
    files = sorted(p.relative_to(state).as_posix() for p in state.rglob("*") if p.is_file())
    manifest["files"] = {name: hashlib.sha256((state / name).read_bytes()).hexdigest()
                         for name in files if name != "manifest.json" and name not in drop}
    (state / "manifest.json").write_text(json.dumps(manifest))


def edit_json(state: Path, name: str, change) -> None:
    data = json.loads((state / name).read_text())
    change(data)
    (state / name).write_text(json.dumps(data))
    rehash(state)


def assert_refused(sandbox, state, caplog, expect: str | None = None) -> None:
    """load_state gives False, logs why, and changes neither the sandbox nor the torch RNG."""
    env, llm, config, step = sandbox.env, sandbox.evolving_llm, sandbox.config, sandbox.step_count
    meta = json.dumps(sandbox.env.state_dict()[0], sort_keys=True)
    rng = torch.get_rng_state()
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        assert sandbox.load_state(state) is False
    assert "load_state" in caplog.text
    if expect is not None:
        assert expect in caplog.text, caplog.text
    assert torch.equal(torch.get_rng_state(), rng)
    assert (sandbox.env, sandbox.evolving_llm, sandbox.config, sandbox.step_count) == \
           (env, llm, config, step)
    assert json.dumps(sandbox.env.state_dict()[0], sort_keys=True) == meta


def dead_pid() -> int:
    """The pid of a process that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def tree(folder: Path) -> dict[str, bytes | str]:
    """Every file (its bytes) and link (its target) under ``folder``, links not followed."""
    out: dict[str, bytes | str] = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root, name)
            rel = path.relative_to(folder).as_posix()
            if path.is_symlink():
                out[rel] = str(os.readlink(path))
            elif path.is_file():
                out[rel] = path.read_bytes()
            else:
                out[rel] = "dir"
    return out


# ----------------------------------------------------------------------------- save: what it replaces
@pytest.mark.parametrize("where", ["empty", "dot", "dotdot", "cwd_absolute", "user_folder",
                                   "user_file", "state_with_user_file", "link"])
def test_save_state_replaces_nothing_it_did_not_write(where, tmp_path, live, monkeypatch,
                                                      caplog, saved):
    work, theirs = tmp_path / "work", tmp_path / "theirs"
    (work / "sub").mkdir(parents=True)
    (work / "notes.txt").write_text("mine")
    theirs.mkdir()
    (theirs / "data.csv").write_text("1,2")
    monkeypatch.chdir(work)
    if where == "state_with_user_file":
        shutil.copytree(saved, work / "state")
        (work / "state" / "todo.txt").write_text("mine too")
    if where == "dotdot":
        monkeypatch.chdir(work / "sub")
    if where == "link":
        (work / "link").symlink_to(theirs)
    path = {"empty": "", "dot": ".", "dotdot": "..", "cwd_absolute": work, "user_folder": theirs,
            "user_file": work / "notes.txt", "state_with_user_file": work / "state",
            "link": work / "link"}[where]
    before = tree(tmp_path)
    with caplog.at_level(logging.ERROR):
        assert live.save_state(path) is False
    assert "save_state" in caplog.text
    assert tree(tmp_path) == before


@pytest.mark.parametrize("path", [None, 123, 1.5, b"", ["state"]])
def test_save_state_of_a_non_path_is_false_not_typeerror(path, live, caplog):
    with caplog.at_level(logging.ERROR):
        assert live.save_state(path) is False
    assert "str or os.PathLike" in caplog.text or "must name a folder" in caplog.text


def test_save_state_writes_into_an_empty_folder_and_replaces_its_own_state(tmp_path, live):
    target = tmp_path / "state"
    target.mkdir()
    assert live.save_state(target)
    first = (target / "manifest.json").read_text()
    assert live.save_state(target)  # its own state: replaced
    assert json.loads((target / "manifest.json").read_text())["files"].keys() == \
           json.loads(first)["files"].keys()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]


# ----------------------------------------------------------------------------- crashes
def _kill_at_second_rename(monkeypatch, target: Path) -> None:
    """os.replace fails from the publish step's second rename on, as if the process died
    there (the rollback rename fails too, so the old state stays beside the target)."""
    real, state = os.replace, {"dead": False}

    def replace(src, dst, *args, **kwargs):
        if Path(src).parent == target.parent and Path(src).name.endswith(".tmp"):
            state["dead"] = True
        if state["dead"]:
            raise OSError("killed")
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)


def test_a_save_killed_between_the_renames_is_undone_by_the_next_load(tmp_path, live, saved,
                                                                      monkeypatch):
    target = tmp_path / "state"
    shutil.copytree(saved, target)
    old = tree(target)
    _kill_at_second_rename(monkeypatch, target)
    assert live.save_state(target) is False
    monkeypatch.undo()
    assert not target.exists()  # the old state waits beside it
    assert [p.name.endswith(".old") for p in tmp_path.iterdir()] == [True]
    other = _sandbox(tmp_path)
    assert other.load_state(target)
    assert tree(target) == old and other.step_count == 2


def test_a_save_killed_between_the_renames_is_undone_by_the_next_save(tmp_path, live, saved,
                                                                      monkeypatch):
    target = tmp_path / "state"
    shutil.copytree(saved, target)
    _kill_at_second_rename(monkeypatch, target)
    assert live.save_state(target) is False
    monkeypatch.undo()
    assert live.save_state(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]
    assert json.loads((target / "manifest.json").read_text())["step"] == live.step_count


def test_a_failed_second_rename_puts_the_old_state_back_at_once(tmp_path, live, saved,
                                                                monkeypatch):
    target = tmp_path / "state"
    shutil.copytree(saved, target)
    old = tree(target)
    real = os.replace

    def replace(src, dst, *args, **kwargs):
        if Path(src).name.endswith(".tmp") and Path(src).parent == tmp_path:
            raise OSError("disk full")
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    assert live.save_state(target) is False
    assert tree(target) == old and sorted(p.name for p in tmp_path.iterdir()) == ["state"]


def test_the_first_save_killed_before_its_rename_is_recovered_from_its_finished_temporary(
        tmp_path, saved, caplog):
    target = tmp_path / "state"
    shutil.copytree(saved, tmp_path / f".state.{dead_pid()}-0123abcd.tmp")
    other = _sandbox(tmp_path)
    with caplog.at_level(logging.WARNING):
        assert other.load_state(target)
    assert "interrupted save" in caplog.text
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_stale_temporaries_of_dead_saves_are_removed_by_the_next_save(tmp_path, live, saved):
    target = tmp_path / "state"
    shutil.copytree(saved, target)
    pid = dead_pid()
    partial = tmp_path / f".state.{pid}-0000aaaa.tmp"
    (partial / "env").mkdir(parents=True)
    (partial / "config.json").write_text("{")
    shutil.copytree(saved, tmp_path / f".state.{pid}-0000bbbb.old")
    shutil.copytree(saved, tmp_path / f".state.old-{pid}")  # named by an earlier version
    own = tmp_path / f".state.{os.getpid()}-0000cccc.tmp"  # this process, no save running
    own.mkdir()
    running = tmp_path / ".state.1-0000dddd.tmp"  # pid 1 is alive: a save that still runs
    running.mkdir()
    user = tmp_path / ".state.backup"  # not a name this tool gives
    user.mkdir()
    assert live.save_state(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["state", running.name, user.name])


def test_a_partial_temporary_of_a_dead_first_save_is_removed_by_the_next_save(tmp_path, live):
    partial = tmp_path / f".state.{dead_pid()}-0000ffff.tmp"
    (partial / "snapshots" / "0").mkdir(parents=True)
    (partial / "config.json").write_text("{")
    assert live.save_state(tmp_path / "state")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]


def test_a_save_of_a_running_process_is_not_recovered_over(tmp_path, saved, caplog):
    # pid 1 is alive: its save may be between its renames, so the old state is not taken.
    shutil.copytree(saved, tmp_path / ".state.1-0000eeee.old")
    other = _sandbox(tmp_path)
    with caplog.at_level(logging.ERROR):
        assert other.load_state(tmp_path / "state") is False
    assert (tmp_path / ".state.1-0000eeee.old").is_dir()


# ----------------------------------------------------------------------------- rng
@pytest.mark.parametrize("rng", ["short", "long", "zeros", "float", "2d"])
def test_a_bad_rng_state_is_refused_before_the_swap(rng, state, live, caplog):
    tensors = load_file(str(state / "tensors.safetensors"))
    good = tensors["rng/torch"]
    tensors["rng/torch"] = {"short": good[:100], "long": torch.cat([good, good[:8]]),
                            "zeros": torch.zeros_like(good), "float": good.float(),
                            "2d": good.reshape(2, -1)}[rng]
    save_file(tensors, str(state / "tensors.safetensors"))
    rehash(state)
    assert_refused(live, state, caplog, "rng/torch")


def test_a_load_that_fails_late_does_not_move_the_torch_rng(state, live, caplog):
    # The adapters of one task are gone (from the manifest too): noticed only once the new
    # LLM, whose adapters draw from the RNG, is built.
    shutil.rmtree(state / "adapters" / "tiny-llama" / "trend_prediction__1")
    rehash(state)
    assert_refused(live, state, caplog, "trend_prediction__1")


# ----------------------------------------------------------------------------- manifest paths
@pytest.mark.parametrize("name", ["../secret.txt", "../../etc/passwd", "/etc/passwd",
                                  "env/../../secret.txt", "./config.json", "env//env_state.json",
                                  "C:/secret.txt", "env\\..\\secret.txt", "", "manifest.json"])
def test_manifest_paths_outside_the_state_are_refused_unread(name, state, live, caplog,
                                                             monkeypatch):
    (state.parent / "secret.txt").write_text("TOP-SECRET-CONTENT")
    manifest = json.loads((state / "manifest.json").read_text())
    manifest["files"][name] = hashlib.sha256(b"TOP-SECRET-CONTENT").hexdigest()
    (state / "manifest.json").write_text(json.dumps(manifest))
    opened = []
    monkeypatch.setattr(state_io, "sha256", lambda path: opened.append(path) or "0" * 64)
    assert_refused(live, state, caplog, "manifest")
    assert opened == [] and "TOP-SECRET" not in caplog.text


@pytest.mark.parametrize("extra", ["prefix_cache", "dropped_adapter", "note", "link"])
def test_files_the_manifest_does_not_list_are_refused(extra, state, live, caplog):
    adapter = state / "adapters" / "tiny-llama" / "trend_prediction__0"
    if extra == "prefix_cache":
        source = next((state / "prefix_cache" / "tiny-llama").iterdir())
        shutil.copy(source, source.with_name("user_engagement__0.ffffffffffff.safetensors"))
    elif extra == "dropped_adapter":
        weights = load_file(str(adapter / "adapter_model.safetensors"))
        rehash(state, drop=("adapters/tiny-llama/trend_prediction__0/adapter_model.safetensors",))
        save_file({k: torch.full_like(v, math.nan) for k, v in weights.items()},
                  str(adapter / "adapter_model.safetensors"))
    elif extra == "note":
        (state / "env" / "README.txt").write_text("hi")
    else:
        shutil.move(state / "env" / "env_state.json", state.parent / "elsewhere.json")
        (state / "env" / "env_state.json").symlink_to(state.parent / "elsewhere.json")
    assert_refused(live, state, caplog)


# ----------------------------------------------------------------------------- crafted values
def _snapshot_index(v):
    return lambda b: b["llm"]["experiences"][0].__setitem__("snapshot", v)


def _member(key, value, task="trend_prediction"):
    return lambda b: b["llm"]["members"][task][0].__setitem__(key, value)


CRAFTED_BODIES = {
    "step_count_negative": lambda b: b.__setitem__("step_count", -7),
    "step_count_float": lambda b: b.__setitem__("step_count", 3.5),
    "step_count_bool": lambda b: b.__setitem__("step_count", True),
    "step_count_huge": lambda b: b.__setitem__("step_count", 10**30),
    "snapshot_index_out_of_range": _snapshot_index(999),
    "snapshot_index_negative": _snapshot_index(-1),
    "snapshot_index_text": _snapshot_index("0"),
    "temperature_negative": _member("temperature", -1),
    "temperature_nan": _member("temperature", math.nan),
    "temperature_zero": _member("temperature", 0),
    "temperature_inf": _member("temperature", math.inf),
    "pulls_negative": _member("pulls", -3),
    "index_wrong": _member("index", 1),
    "recent_text": _member("recent", ["x"]),
    "recent_too_long": _member("recent", [0.0] * 1000),
    "total_reward_nan": _member("total_reward", math.nan),
    "members_empty": lambda b: b["llm"].__setitem__("members", {}),
    "members_of_a_task_empty": lambda b: b["llm"]["members"].__setitem__("trend_prediction", []),
    "members_one_extra": lambda b: b["llm"]["members"]["trend_prediction"].append(
        dict(b["llm"]["members"]["trend_prediction"][0], index=2)),
    "members_a_list": lambda b: b["llm"].__setitem__("members", []),
    "performance_nan": lambda b: b["llm"]["performance"]["trend_prediction"].append(math.nan),
    "performance_unknown_task": lambda b: b["llm"]["performance"].__setitem__("dancing", []),
    "reward_text": lambda b: b["llm"]["experiences"][0].__setitem__("reward", "1"),
    "experience_unknown_task": lambda b: b["llm"]["experiences"][0].__setitem__("task", "x"),
    "experience_missing_key": lambda b: b["llm"]["experiences"][0].pop("prompt"),
    "experiences_a_dict": lambda b: b["llm"].__setitem__("experiences", {}),
    "pending_a_list": lambda b: b["llm"].__setitem__("pending", []),
    "events_of_numbers": lambda b: b["llm"].__setitem__("events", [1, 2]),
    "evolution_step_negative": lambda b: b["llm"].__setitem__("evolution_step", -1),
    "strategy_other_kind": lambda b: b["strategy"].__setitem__("kind", "meta_learning"),
    "strategy_updates_negative": lambda b: b["strategy"].__setitem__("online_updates", -1),
    "llm_missing": lambda b: b.pop("llm"),
    "unknown_key": lambda b: b.__setitem__("surprise", 1),
}


@pytest.mark.parametrize("craft", sorted(CRAFTED_BODIES))
def test_crafted_sandbox_json_is_refused(craft, state, live, caplog):
    edit_json(state, "sandbox.json", CRAFTED_BODIES[craft])
    assert_refused(live, state, caplog, "sandbox.json")


@pytest.mark.parametrize("text", ['{"step_count": 1e400', '{"step_count": NaN',
                                  '{"step_count": -Infinity', "[1, 2]", "null", '"x"',
                                  "[" * 100_000, "1" * 10_000])
def test_sandbox_json_out_of_range_or_not_an_object_is_refused(text, state, live, caplog):
    body = (state / "sandbox.json").read_text()
    if text.startswith('{"step_count"'):
        body = text + body[body.index(","):]
    else:
        body = text
    (state / "sandbox.json").write_text(body)
    rehash(state)
    assert_refused(live, state, caplog, "sandbox.json")


@pytest.mark.parametrize("craft", ["files_a_list", "files_a_string", "digest_short",
                                   "digest_a_number", "step_negative", "no_sandbox_json"])
def test_crafted_manifest_is_refused(craft, state, live, caplog):
    manifest = json.loads((state / "manifest.json").read_text())
    files = manifest["files"]
    if craft == "files_a_list":
        manifest["files"] = sorted(files)
    elif craft == "files_a_string":
        manifest["files"] = "config.json"
    elif craft == "digest_short":
        files["config.json"] = files["config.json"][:10]
    elif craft == "digest_a_number":
        files["config.json"] = 7
    elif craft == "step_negative":
        manifest["step"] = -7
    else:
        del files["sandbox.json"]
        (state / "sandbox.json").unlink()
    (state / "manifest.json").write_text(json.dumps(manifest))
    assert_refused(live, state, caplog, "manifest" if craft != "no_sandbox_json" else "no ")


@pytest.mark.parametrize("craft", ["garbage_npz", "npz_of_other_arrays", "meta_a_list",
                                   "gap_in_numbering"])
def test_crafted_snapshots_are_refused(craft, state, live, caplog):
    snap = state / "snapshots" / "0"
    if craft == "garbage_npz":
        (snap / "arrays.npz").write_bytes(b"PK\x03\x04" + os.urandom(300))
    elif craft == "npz_of_other_arrays":
        np.savez(snap / "arrays.npz", a=np.zeros(3))
    elif craft == "meta_a_list":
        (snap / "meta.json").write_text("[]")
    else:
        shutil.rmtree(snap)
    rehash(state)
    assert_refused(live, state, caplog, "snapshot")


def test_a_pickled_adapter_is_refused_unread(state, live, caplog, tmp_path):
    adapter = state / "adapters" / "tiny-llama" / "trend_prediction__0"
    weights = load_file(str(adapter / "adapter_model.safetensors"))
    (adapter / "adapter_model.safetensors").unlink()
    torch.save(weights, adapter / "adapter_model.bin")  # PEFT's pickle fallback
    rehash(state)
    assert_refused(live, state, caplog, "adapter_model.bin")


@pytest.mark.parametrize("craft", ["rank_huge", "alpha_nan", "not_lora", "a_list"])
def test_crafted_adapter_config_is_refused(craft, state, live, caplog):
    name = "adapters/tiny-llama/trend_prediction__0/adapter_config.json"
    if craft == "a_list":
        (state / name).write_text("[]")
        rehash(state)
    else:
        change = {"rank_huge": ("r", 10**9), "alpha_nan": ("lora_alpha", math.nan),
                  "not_lora": ("peft_type", "PICKLE")}[craft]
        edit_json(state, name, lambda c: c.__setitem__(*change))
    assert_refused(live, state, caplog, "adapter_config.json")


@pytest.mark.parametrize("where", ["prefix_cache", "adapter"])
def test_nan_weights_are_refused(where, state, live, caplog):
    if where == "adapter":
        path = state / "adapters" / "tiny-llama" / "trend_prediction__0" / \
            "adapter_model.safetensors"
    else:
        path = next((state / "prefix_cache" / "tiny-llama").iterdir())
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    tensors = load_file(str(path))
    key = sorted(tensors)[0]
    tensors[key] = torch.full_like(tensors[key], math.nan)
    save_file(tensors, str(path), metadata=metadata)
    rehash(state)
    assert_refused(live, state, caplog, "NaN")


@pytest.mark.parametrize("craft", ["a_list", "num_users_text", "unknown_field", "pool_size_0"])
def test_crafted_config_json_is_refused(craft, state, live, caplog):
    if craft == "a_list":
        (state / "config.json").write_text("[1]")
        rehash(state)
    else:
        change = {"num_users_text": ("num_users", "200"), "unknown_field": ("surprise", 1),
                  "pool_size_0": ("model_pool_size", 0)}[craft]
        edit_json(state, "config.json", lambda c: c.__setitem__(*change))
    assert_refused(live, state, caplog, "config.json")


def test_a_state_does_not_redirect_where_the_sandbox_writes(state, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    edit_json(state, "config.json", lambda c: c.__setitem__("log_dir", str(elsewhere)))
    sandbox = _sandbox(tmp_path, log_dir=str(tmp_path / "mine"))
    assert sandbox.load_state(state)
    assert sandbox.config.log_dir == str(tmp_path / "mine")
    sandbox.simulate_step()
    assert not elsewhere.exists()
    assert sandbox.load_state(state, log_dir=tmp_path / "asked")  # unless the caller asks
    assert sandbox.config.log_dir == str(tmp_path / "asked")
    sandbox.close()


# ----------------------------------------------------------------------------- generated states
def _locations(value, prefix=()):
    """Every place in a JSON document (a path of keys and indices)."""
    yield prefix
    items = value.items() if isinstance(value, dict) else \
        enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        yield from _locations(item, prefix + (key,))


def _set(doc, where, value):
    """``doc`` with the value at ``where`` replaced (or deleted, for ``_DELETE``)."""
    if not where:
        return value
    parent = doc
    for key in where[:-1]:
        parent = parent[key]
    if value is _DELETE:
        del parent[where[-1]]
    else:
        parent[where[-1]] = value
    return doc


_DELETE = object()


def test_generated_crafted_states_never_raise_and_a_refused_one_changes_nothing(
        tmp_path, saved, live, caplog):
    """Re-hashed states with one JSON value replaced by anything JSON can hold: load_state
    returns True or False, never raises, and on False nothing moved (hypothesis)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    state = tmp_path / "state"
    shutil.copytree(saved, state)
    names = ("sandbox.json", "config.json", "manifest.json",
             "adapters/tiny-llama/trend_prediction__0/adapter_config.json",
             "snapshots/0/meta.json", "env/env_state.json")
    originals = {n: (state / n).read_text() for n in names}
    scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70)
               | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=6))
    values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(st.text(max_size=4), inner, max_size=3),
                          max_leaves=5) | st.just(_DELETE)

    @settings(max_examples=40, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def crafted(data):
        name = data.draw(st.sampled_from(names), label="file")
        doc = json.loads(originals[name])
        where = data.draw(st.sampled_from(list(_locations(doc))), label="where")
        value = data.draw(values, label="value")
        if value is _DELETE and not where:
            value = None
        for n in names:
            (state / n).write_text(originals[n])
        (state / name).write_text(json.dumps(_set(doc, where, value)))
        if name != "manifest.json":
            rehash(state)
        env, llm, rng = live.env, live.evolving_llm, torch.get_rng_state()
        loaded = live.load_state(state)
        assert loaded in (True, False)
        if not loaded:
            assert live.env is env and live.evolving_llm is llm
            assert torch.equal(torch.get_rng_state(), rng)

    with caplog.at_level(logging.CRITICAL):
        crafted()


def test_a_state_saved_on_another_device_loads_on_this_one(state, tmp_path):
    # A GPU machine's state names a device this CPU machine lacks: the live sandbox keeps its own.
    edit_json(state, "config.json", lambda c: c.__setitem__("device", "cuda:7"))
    sandbox = _sandbox(tmp_path, device="cpu")
    assert sandbox.load_state(state)
    assert sandbox.config.device == "cpu"
