"""``sandbox-rl evolve --checkpoint-every N``, Ctrl-C and ``--resume RUN`` on a tiny model: a run
stopped and resumed is bit for bit the run that was never stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from safetensors.numpy import load_file

from sandbox_rl.cli import main
from sandbox_rl.core.run import EvolveRunConfig, RunInterrupted, run_evolution
from sandbox_rl.core.self_evolving_oasis import SelfEvolvingOasis
from sandbox_rl.run_folders import (EVOLVE, MARKER, STATE_FORMAT, evolve_checkpoints,
                                    prepare_run_folder, prune_checkpoints, publish_folder,
                                    recover_folder)

TINY = dict(model="tiny-llama", users=200, pool_size=2, evolution_interval=2, quiet=True)
# Per-step fields that measure this process, not the run.
MEASURED = ("seconds", "peak_rss_bytes")


def _records(out):
    lines = (out / "logs" / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in MEASURED} for line in lines]


def _state_files(state):
    """Every file of a saved state by content (tensors as arrays); the config without log_dir,
    the manifest without the checksums that differ with it."""
    out = {}
    for path in sorted(p for p in state.rglob("*") if p.is_file()):
        name = path.relative_to(state).as_posix()
        if name == "manifest.json":
            continue
        if name.endswith(".safetensors"):
            out[name] = load_file(path)
        elif name.endswith(".npz"):
            with np.load(path) as data:
                out[name] = {k: data[k] for k in data.files}
        else:
            out[name] = json.loads(path.read_text()) if name.endswith(".json") \
                else path.read_bytes()
            if name == "config.json":
                out[name].pop("log_dir")
    return out


def _assert_same_state(a, b):
    fa, fb = _state_files(a), _state_files(b)
    assert sorted(fa) == sorted(fb)
    assert any(n.startswith("adapters/") and n.endswith(".safetensors") for n in fa)
    for name, va in fa.items():
        vb = fb[name]
        if isinstance(va, dict) and name.endswith((".safetensors", ".npz")):
            assert sorted(va) == sorted(vb), name
            for key in va:
                assert np.array_equal(va[key], vb[key]), (name, key)
        else:
            assert va == vb, name


def _summary_numbers(out):
    summary = json.loads((out / "summary.json").read_text())
    return {k: summary[k] for k in ("tasks", "events", "evolution_step", "network")}


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """Six steps never stopped, a checkpoint after every step (the last three kept)."""
    out = tmp_path_factory.mktemp("straight") / "run"
    run_evolution(EvolveRunConfig(steps=6, checkpoint_every=1, out=str(out), **TINY))
    return out


def test_checkpoints_are_saved_states_and_the_last_three_are_kept(straight):
    names = sorted(p.name for p in (straight / "checkpoints").iterdir())
    assert names == ["step-000003", "step-000004", "step-000005"]
    assert [step for step, _ in evolve_checkpoints(straight)] == [6, 5, 4, 3]
    assert len(_records(straight)) == 6


def test_three_steps_then_resume_then_three_more_is_the_straight_run(straight, tmp_path):
    out = tmp_path / "run"
    run_evolution(EvolveRunConfig(steps=3, out=str(out), **TINY))
    summary = run_evolution(EvolveRunConfig(resume=str(out), steps=6, quiet=True))
    assert summary["resumed_at_step"] == 3 and summary["config"]["users"] == 200
    assert _records(out) == _records(straight)
    assert _summary_numbers(out) == _summary_numbers(straight)
    _assert_same_state(out / "state", straight / "state")
    assert json.loads((out / MARKER).read_text())["config"]["steps"] == 6


def test_ctrl_c_checkpoints_the_last_step_and_resume_continues_it(straight, tmp_path,
                                                                  monkeypatch):
    out = tmp_path / "run"
    real = SelfEvolvingOasis.simulate_step

    def interrupted(self):
        if self.step_count == 2:  # Ctrl-C during step 3: it finishes, then the run stops
            os.kill(os.getpid(), signal.SIGINT)
        return real(self)

    monkeypatch.setattr(SelfEvolvingOasis, "simulate_step", interrupted)
    # The handler the run found (a shell's background job starts with SIGINT ignored).
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(RunInterrupted, match=r"after step 3 of 6.*--resume") as err:
        run_evolution(EvolveRunConfig(steps=6, out=str(out), **TINY))
    assert "\n" not in str(err.value)
    assert signal.getsignal(signal.SIGINT) is before
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-000003"]
    assert not (out / "state").exists() and not (out / "summary.json").exists()
    monkeypatch.setattr(SelfEvolvingOasis, "simulate_step", real)
    # A step logged after the checkpoint (the process killed before its next one) goes.
    with open(out / "logs" / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 4, "scores": {}}) + "\n")
    assert main(["evolve", "--resume", str(out), "--quiet"]) == 0  # the run's own 6 steps
    assert _records(out) == _records(straight)
    assert _summary_numbers(out) == _summary_numbers(straight)
    _assert_same_state(out / "state", straight / "state")


def test_a_second_ctrl_c_stops_at_once_saving_nothing_more(tmp_path, monkeypatch):
    out = tmp_path / "run"
    real = SelfEvolvingOasis.simulate_step

    def interrupted(self):
        if self.step_count == 2:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)  # raises here, in step 3
        return real(self)

    monkeypatch.setattr(SelfEvolvingOasis, "simulate_step", interrupted)
    with pytest.raises(RunInterrupted, match=r"during step 3 of 6 \(not saved\); the newest "
                                             r"checkpoint is of step 2; continue with"):
        run_evolution(EvolveRunConfig(steps=6, checkpoint_every=2, out=str(out), **TINY))
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-000002"]
    assert len(_records(out)) == 2


def test_sigint_to_the_command_exits_130_with_how_to_resume(tmp_path):
    out = tmp_path / "run"
    code = "import sys; from sandbox_rl.cli import main; sys.exit(main())"
    proc = subprocess.Popen([sys.executable, "-c", code, "evolve", "--model", "tiny-llama",
                             "--users", "200", "--pool-size", "2", "--steps", "200",
                             "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    metrics = out / "logs" / "metrics.jsonl"
    deadline = time.monotonic() + 240
    while not (metrics.exists() and metrics.read_text().count("\n") >= 1):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("sandbox-rl evolve: interrupted after step ")
    assert last.endswith(f"continue with: sandbox-rl evolve --resume {out}")
    (step, path), *_ = evolve_checkpoints(out)
    assert path.parent.name == "checkpoints"
    assert step == len(metrics.read_text().splitlines()) >= 1


# ----------------------------------------------------------------------------- bad --resume
def _fake_run(folder, steps=6, checkpoint=3, **settings):
    """A run folder as an interrupted evolve leaves it (its checkpoint not a real state: these
    checks come before anything is loaded)."""
    config = {**EvolveRunConfig(steps=steps, out=str(folder), **TINY).__dict__, **settings}
    prepare_run_folder(folder, False, EVOLVE, {**config, "quiet": False})
    if checkpoint is not None:
        _fake_state(folder / "checkpoints" / f"step-{checkpoint:06d}", checkpoint)
    (folder / "logs").mkdir()
    (folder / "logs" / "metrics.jsonl").write_text("")
    return folder


def _fake_state(folder, step):
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"format": STATE_FORMAT, "step": step}))


def _listing(folder):
    return sorted((os.path.relpath(os.path.join(r, n), folder),
                   os.path.getsize(os.path.join(r, n)))
                  for r, ds, fs in os.walk(folder) for n in fs)


@pytest.mark.parametrize("extra, flag", [
    (["--users", "300"], "--users"), (["--model", "embedded"], "--model"),
    (["--seed", "1"], "--seed"), (["--no-online-adaptation"], "--online-adaptation"),
    (["--strategy", "adaptive_compression"], "--strategy"), (["--pool-size", "3"], "--pool-size"),
    (["--overwrite"], "--overwrite"), (["--steps", "2"], "--steps"),
    (["--out", "elsewhere"], "--out"),
])
def test_resume_with_a_differing_setting_is_refused_naming_the_flag(extra, flag, tmp_path,
                                                                    capsys):
    run = _fake_run(tmp_path / "run")
    before = _listing(tmp_path)
    assert main(["evolve", "--resume", str(run), *extra]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and f"argument {flag}:" in err, err
    assert _listing(tmp_path) == before


def test_resume_with_the_runs_own_values_passes_the_checks(tmp_path):
    from sandbox_rl.core.run import resume_config

    run = _fake_run(tmp_path / "run", steps=6)
    config = resume_config(EvolveRunConfig(resume=str(run), users=200, steps=9),
                           given={"resume", "users", "steps"})
    assert (config.users, config.steps, config.model, config.out) == (200, 9, "tiny-llama",
                                                                      str(run))
    assert resume_config(EvolveRunConfig(resume=str(run)), given={"resume"}).steps == 6


@pytest.mark.parametrize("case, words", [
    ("missing", "no such folder"), ("file", "not a folder"), ("foreign", "not a run folder"),
    ("no checkpoint", "with a checkpoint"), ("no settings", "holds the run's settings"),
    ("llm-ppo", "llm-ppo"),
])
def test_resume_of_what_is_no_resumable_run_is_a_usage_error(case, words, tmp_path, capsys):
    run = tmp_path / "run"
    if case == "file":
        run.write_text("x")
    elif case == "foreign":
        run.mkdir()
        (run / "thesis.tex").write_text("mine")
    elif case == "no checkpoint":
        _fake_run(run, checkpoint=None)
    elif case == "no settings":
        _fake_run(run)
        (run / MARKER).write_text(json.dumps({"tool": "sandbox_rl", "kind": "evolve"}))
    elif case == "llm-ppo":
        run.mkdir()
        (run / MARKER).write_text(json.dumps({"tool": "sandbox_rl", "kind": "llm-ppo"}))
    before = _listing(tmp_path)
    assert main(["evolve", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "argument --resume:" in err and words in err, err
    assert _listing(tmp_path) == before


def test_resume_from_a_checkpoint_that_does_not_load_is_a_usage_error(tmp_path, capsys):
    run = _fake_run(tmp_path / "run")
    before = _listing(tmp_path)
    assert main(["evolve", "--resume", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "argument --resume:" in err and "loads" in err and "Traceback" not in err
    assert _listing(tmp_path) == before


# ----------------------------------------------------------------------------- run folders
def test_overwrite_replaces_a_run_folder_with_checkpoints(tmp_path):
    run = _fake_run(tmp_path / "run")
    assert prepare_run_folder(run, True, EVOLVE) == run
    assert sorted(p.name for p in run.iterdir()) == [MARKER]


def test_prune_keeps_the_newest_and_removes_dead_temporaries(tmp_path):
    root = tmp_path / "checkpoints"
    for step in (1, 2, 3, 4, 5):
        _fake_state(root / f"step-{step:06d}", step)
    (root / ".step-000006.999999999-0123abcd.tmp").mkdir()  # a dead save's temporary
    (root / "notes.txt").write_text("not ours")
    prune_checkpoints(tmp_path)
    assert sorted(p.name for p in root.iterdir()) == ["notes.txt", "step-000003", "step-000004",
                                                      "step-000005"]
    prune_checkpoints(tmp_path, after=3)
    assert sorted(p.name for p in root.iterdir()) == ["notes.txt", "step-000003"]


def test_publish_folder_replaces_atomically_and_recovers_a_crash(tmp_path):
    target = tmp_path / "checkpoint"
    publish_folder(target, lambda d: (d / "a").write_text("1"))
    publish_folder(target, lambda d: (d / "a").write_text("2"))
    assert (target / "a").read_text() == "2" and [p.name for p in tmp_path.iterdir()] == [
        "checkpoint"]
    # killed between the renames: the old folder aside, nothing at the target
    target.rename(tmp_path / ".checkpoint.999999999-0123abcd.old")
    (tmp_path / ".checkpoint.999999998-0123abcd.tmp").mkdir()
    recover_folder(target)
    assert (target / "a").read_text() == "2" and [p.name for p in tmp_path.iterdir()] == [
        "checkpoint"]


def test_recover_folder_judges_temporaries_of_this_process_by_their_publish(tmp_path, monkeypatch):
    """One staleness rule for every published folder: a temporary of this process is stale
    unless a publish of this process holds its token; a finished temporary is put back only
    when the caller can tell it is whole."""
    import os

    from sandbox_rl.run_folders import _IN_FLIGHT

    target = tmp_path / "checkpoint"
    mine = tmp_path / f".checkpoint.{os.getpid()}-0123abcd.tmp"
    running = tmp_path / f".checkpoint.{os.getpid()}-89abcdef.tmp"
    mine.mkdir()
    running.mkdir()
    monkeypatch.setattr("sandbox_rl.run_folders._IN_FLIGHT", _IN_FLIGHT | {"89abcdef"})
    assert recover_folder(target) is None  # a temporary may be half written: not put back
    assert sorted(p.name for p in tmp_path.iterdir()) == [running.name]
    (running / "a").write_text("whole")
    monkeypatch.setattr("sandbox_rl.run_folders._IN_FLIGHT", set(_IN_FLIGHT))
    assert recover_folder(target, intact=lambda p: (p / "a").is_file()) == running
    assert (target / "a").read_text() == "whole"
