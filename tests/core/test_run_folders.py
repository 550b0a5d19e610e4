"""``evolve --overwrite``, ``train llm-ppo --out``: only run folders of this tool are replaced."""

from __future__ import annotations

import json
import os

import pytest

from sandbox_rl.core.run import EvolveRunConfig, run_evolution
from sandbox_rl.run_folders import (EVOLVE, LLM_PPO, MARKER, prepare_run_folder,
                                    remove_outputs)


def _user_files(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "thesis.tex").write_text("years of work")
    (folder / "data").mkdir()
    (folder / "data" / "x.csv").write_text("1,2")


def _listing(folder):
    return sorted(os.path.relpath(os.path.join(r, n), folder)
                  for r, ds, fs in os.walk(folder) for n in ds + fs)


def _evolve_run(folder, **extra):
    """A run folder as evolve leaves it (without running it)."""
    (folder / "logs").mkdir(parents=True)
    (folder / "logs" / "metrics.jsonl").write_text("{}\n")
    (folder / "plots").mkdir()
    (folder / "summary.json").write_text(json.dumps({"config": {"strategy": "multi_model"}}))
    for name, text in extra.items():
        (folder / name).write_text(text)


@pytest.mark.parametrize("out", [".", "cwd", "parent"])
def test_evolve_overwrite_of_the_working_directory_deletes_nothing(out, tmp_path, monkeypatch):
    _user_files(tmp_path / "work")
    (tmp_path / "work" / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "work" / ("sub" if out == "parent" else ""))
    path = {".": ".", "cwd": str(tmp_path / "work"), "parent": ".."}[out]
    before = _listing(tmp_path)
    with pytest.raises(FileExistsError, match="overwrite"):
        run_evolution(EvolveRunConfig(out=path, overwrite=True, quiet=True))
    assert _listing(tmp_path) == before


def test_evolve_overwrite_of_a_folder_that_is_not_a_run_deletes_nothing(tmp_path):
    _user_files(tmp_path / "mine")
    before = _listing(tmp_path)
    with pytest.raises(FileExistsError, match="not a run folder"):
        run_evolution(EvolveRunConfig(out=str(tmp_path / "mine"), overwrite=True, quiet=True))
    assert _listing(tmp_path) == before


def test_evolve_overwrite_of_a_run_folder_holding_user_files_deletes_nothing(tmp_path):
    run = tmp_path / "run"
    _evolve_run(run, **{"notes.md": "mine"})
    before = _listing(tmp_path)
    with pytest.raises(FileExistsError, match="notes.md"):
        prepare_run_folder(run, True, EVOLVE)
    assert _listing(tmp_path) == before


def test_evolve_out_that_is_a_file_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="not a folder"):
        run_evolution(EvolveRunConfig(out=str(tmp_path / "file"), overwrite=True, quiet=True))
    assert (tmp_path / "file").read_text() == "x"


@pytest.mark.parametrize("marked", [True, False])
def test_a_run_folder_of_evolve_is_replaced(marked, tmp_path):
    run = tmp_path / "run"
    _evolve_run(run)
    if marked:
        (run / MARKER).write_text(json.dumps({"tool": "sandbox_rl", "kind": "evolve"}))
    with pytest.raises(FileExistsError, match="--overwrite"):
        prepare_run_folder(run, False, EVOLVE)
    assert prepare_run_folder(run, True, EVOLVE) == run
    assert _listing(run) == [MARKER]
    prepare_run_folder(tmp_path / "new", False, EVOLVE)  # absent or empty: no flag needed
    assert _listing(tmp_path / "new") == [MARKER]


def test_a_run_folder_of_another_command_is_not_replaced(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / MARKER).write_text(json.dumps({"tool": "sandbox_rl", "kind": "llm-ppo"}))
    (run / "tb").mkdir()
    with pytest.raises(FileExistsError, match="llm-ppo"):
        prepare_run_folder(run, True, EVOLVE)
    assert (run / "tb").is_dir()


def test_a_link_to_a_folder_is_not_replaced(tmp_path):
    _user_files(tmp_path / "mine")
    (tmp_path / "link").symlink_to(tmp_path / "mine")
    with pytest.raises(FileExistsError, match="not a folder"):
        prepare_run_folder(tmp_path / "link", True, EVOLVE)
    assert (tmp_path / "mine" / "thesis.tex").exists()


# ----------------------------------------------------------------------------- llm-ppo
def _llm_ppo_run(folder):
    (folder / "tb").mkdir(parents=True)
    (folder / "tb" / "events.out.tfevents.1").write_text("old run")
    (folder / "adapters").mkdir()
    (folder / "results.json").write_text(json.dumps({"config": {"updates": 3}, "results": {}}))


def test_llm_ppo_refuses_a_finished_run_without_overwrite(tmp_path):
    from sandbox_rl.training.llm_ppo import LLMPPOConfig, train_llm_ppo

    run = tmp_path / "run"
    _llm_ppo_run(run)
    before = _listing(tmp_path)
    with pytest.raises(FileExistsError, match="--overwrite"):
        train_llm_ppo(LLMPPOConfig(model="tiny-llama", out=str(run), quiet=True))
    assert _listing(tmp_path) == before


def test_llm_ppo_overwrite_removes_only_the_earlier_runs_outputs(tmp_path):
    from sandbox_rl.training.llm_ppo import LLMPPOConfig, _prepare_out

    run = tmp_path / "run"
    _llm_ppo_run(run)
    (run / "my_notes.txt").write_text("mine")
    assert _prepare_out(LLMPPOConfig(out=str(run), overwrite=True)) == run
    assert _listing(run) == ["my_notes.txt"]  # no TensorBoard files of the earlier run


def test_llm_ppo_out_that_is_a_file_is_a_clear_error(tmp_path):
    from sandbox_rl.training.llm_ppo import LLMPPOConfig, _prepare_out

    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="not a folder"):
        _prepare_out(LLMPPOConfig(out=str(tmp_path / "file"), overwrite=True))


def test_remove_outputs_refuses_a_folder_that_is_no_run(tmp_path):
    _user_files(tmp_path / "mine")
    (tmp_path / "mine" / "tb").mkdir()
    with pytest.raises(FileExistsError):
        remove_outputs(tmp_path / "mine", LLM_PPO)
    assert (tmp_path / "mine" / "tb").is_dir()


@pytest.mark.parametrize("inside", ["logs/notes.txt", "plots/figure.svg", "state/README.md",
                                    "logs/tensorboard/analysis.ipynb"])
def test_evolve_overwrite_keeps_user_files_inside_a_runs_outputs(tmp_path, inside):
    run = tmp_path / "run"
    _evolve_run(run)
    (run / inside).parent.mkdir(parents=True, exist_ok=True)
    (run / inside).write_text("mine")
    before = _listing(tmp_path)
    with pytest.raises(FileExistsError, match=inside):
        prepare_run_folder(run, True, EVOLVE)
    assert _listing(tmp_path) == before


def test_evolve_overwrite_removes_what_runs_write_inside_outputs(tmp_path):
    run = tmp_path / "run"
    _evolve_run(run)
    adapters = run / "state" / "adapters" / "embedded"
    (adapters / "x__0").mkdir(parents=True)
    (adapters / "x__0" / "adapter_model.safetensors").write_bytes(b"\0")
    (adapters / "README.md").write_text("---\nlibrary_name: peft\n---\n")
    (run / "logs" / "tensorboard").mkdir()
    (run / "logs" / "tensorboard" / "events.out.tfevents.1.host.1.0").write_bytes(b"\0")
    prepare_run_folder(run, True, EVOLVE)
    assert _listing(run) == [MARKER]


def test_llm_ppo_overwrite_keeps_user_files_inside_its_outputs(tmp_path):
    run = tmp_path / "run"
    _llm_ppo_run(run)
    (run / "tb").mkdir(exist_ok=True)
    (run / "tb" / "notes.txt").write_text("mine")
    before = _listing(tmp_path)
    with pytest.raises(FileExistsError, match="notes.txt"):
        remove_outputs(run, LLM_PPO)
    assert _listing(tmp_path) == before


def test_llm_ppo_overwrite_refuses_a_run_whose_outputs_hold_user_files(tmp_path):
    from sandbox_rl.training.llm_ppo import LLMPPOConfig, _prepare_out

    run = tmp_path / "run"
    _llm_ppo_run(run)
    (run / "adapters" / "notes.txt").write_text("mine")
    before = _listing(tmp_path)
    with pytest.raises(FileExistsError, match="notes.txt"):
        _prepare_out(LLMPPOConfig(out=str(run), overwrite=True))
    assert _listing(tmp_path) == before
