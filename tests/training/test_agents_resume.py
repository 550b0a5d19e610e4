"""``train agents`` / ``train llm-ppo``: Ctrl-C keeps the finished tasks, ``--resume RUN``
trains only the others (tiny model)."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file

from sandbox_rl.cli import main
from sandbox_rl.training import agents_trainer, llm_ppo

TASKS = ("trend_prediction", "user_engagement")
AGENTS = ["train", "agents", "--model", "tiny-llama", "--tasks", *TASKS, "--minutes", "0.02",
          "--users", "200", "--world-steps", "2", "--validation-seeds", "900",
          "--eval-seeds", "1000", "--eval-steps", "2", "--threads", "1", "--quiet"]


def _weights(folder):
    return load_file(folder / "adapter_model.safetensors")


def _same(a, b):
    return sorted(a) == sorted(b) and all((a[k] == b[k]).all() for k in a)


@pytest.fixture
def fake_training(monkeypatch):
    """A task's training as a known change of its LoRA B weights; Ctrl-C in the task named
    by ``fake_training.interrupt[0]``; ``fake_training.calls``: the tasks trained."""
    import torch

    calls, interrupt = [], [None]

    def train_task(adapters, task, cfg, writer, progress, bar):
        calls.append(task)
        if task == interrupt[0]:
            raise KeyboardInterrupt
        with torch.no_grad():
            for name, p in adapters.model.named_parameters():
                if f"lora_B.{task}." in name:
                    p.add_(0.01 * (1 + TASKS.index(task)))
        return {"rounds": [], "task": task}

    monkeypatch.setattr(agents_trainer, "_train_task", train_task)
    train_task.calls, train_task.interrupt = calls, interrupt
    return train_task


def test_agents_ctrl_c_keeps_finished_tasks_and_resume_trains_the_rest(tmp_path, capsys,
                                                                      fake_training):
    out = tmp_path / "run"
    fake_training.interrupt[0] = TASKS[1]
    assert main([*AGENTS, "--out", str(out)]) == 130
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.endswith(f"1 of 2 tasks finished ({TASKS[0]}), saved in {out / 'resume'}; "
                        f"continue with: sandbox-rl train agents --resume {out}")
    state = json.loads((out / "resume" / "state.json").read_text())
    assert list(state["tasks"]) == [TASKS[0]] and not (out / "training.json").exists()
    first = _weights(out / "resume" / "adapters" / TASKS[0])

    fake_training.interrupt[0], fake_training.calls[:] = None, []
    before = os.listdir(out)
    for extra, flag in ((["--seed", "1"], "--seed"), (["--tasks", TASKS[0]], "--tasks"),
                        (["--overwrite"], "--overwrite"), (["--out", str(tmp_path)], "--out")):
        assert main(["train", "agents", "--resume", str(out), *extra]) == 2
        assert f"argument {flag}:" in capsys.readouterr().err
    assert os.listdir(out) == before and fake_training.calls == []

    assert main(["train", "agents", "--resume", str(out), "--minutes", "0.03", "--quiet"]) == 0
    assert fake_training.calls == [TASKS[1]]  # the finished task is not trained again
    log = json.loads((out / "training.json").read_text())
    assert list(log["tasks"]) == list(TASKS) and log["config"]["minutes"] == 0.03
    assert _same(_weights(out / "adapters" / TASKS[0]), first)
    assert not _same(_weights(out / "adapters" / TASKS[1]), first)
    assert all((out / name).is_file() for name in agents_trainer.EVALUATIONS)
    assert not (out / "resume").exists()
    assert main(["train", "agents", "--resume", str(out)]) == 2
    assert "it finished" in capsys.readouterr().err


def test_agents_interrupted_during_evaluation_resumes_the_evaluation(tmp_path, capsys,
                                                                   fake_training, monkeypatch):
    out = tmp_path / "run"
    real = agents_trainer._evaluate

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(agents_trainer, "_evaluate", interrupted)
    assert main([*AGENTS, "--out", str(out)]) == 130
    assert "during the evaluation" in capsys.readouterr().err
    monkeypatch.setattr(agents_trainer, "_evaluate", real)
    fake_training.calls[:] = []
    assert main(["train", "agents", "--resume", str(out), "--quiet"]) == 0
    assert fake_training.calls == []
    assert all((out / name).is_file() for name in agents_trainer.EVALUATIONS)


@pytest.mark.parametrize("case", ["missing", "file", "empty"])
def test_agents_resume_of_no_interrupted_run_is_a_usage_error(case, tmp_path, capsys):
    run = tmp_path / "run"
    if case == "file":
        run.write_text("x")
    elif case == "empty":
        run.mkdir()
    assert main(["train", "agents", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "argument --resume:" in err


# ----------------------------------------------------------------------------- llm-ppo
LLM = dict(model="tiny-llama", tasks=TASKS, updates=1, prompts_per_update=2, train_seeds=(0,),
           eval_seeds=(1000,), steps=2, users=100, eval_samples=1, threads=1,
           learning_rate=1e-2, quiet=True)


def _results(out):
    """The saved training statistics without the wall time of each update, and the held-out
    lines without the adapters folder they name."""
    saved = json.loads((out / "results.json").read_text())["tasks"]
    for t in saved.values():
        for update in t["updates"]:
            update.pop("seconds")
    lines = [{k: v for k, v in json.loads(line).items() if k != "adapters"}
             for name in llm_ppo.EVALUATIONS for line in (out / name).read_text().splitlines()]
    return saved, lines


def test_llm_ppo_resumed_after_ctrl_c_gives_the_results_of_the_run_never_stopped(tmp_path,
                                                                                  monkeypatch):
    straight = tmp_path / "straight"
    llm_ppo.train(llm_ppo.LLMPPOConfig(**LLM, out=str(straight)))
    out = tmp_path / "run"
    real, real_evaluate = llm_ppo.episode_update, llm_ppo._evaluate
    trained = []

    def update(learner, task, *args, **kwargs):
        trained.append(task)
        if task == TASKS[1]:
            raise KeyboardInterrupt
        return real(learner, task, *args, **kwargs)

    monkeypatch.setattr(llm_ppo, "episode_update", update)
    with pytest.raises(llm_ppo.RunInterrupted, match="1 of 2 tasks finished.*--resume"):
        llm_ppo.train(llm_ppo.LLMPPOConfig(**LLM, out=str(out)))
    assert not (out / "results.json").exists()
    with pytest.raises(ValueError, match="invalid updates=2"):
        llm_ppo.resume_config(llm_ppo.LLMPPOConfig(resume=str(out), updates=2), {"updates"})

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(llm_ppo, "episode_update", real)
    monkeypatch.setattr(llm_ppo, "_evaluate", interrupted)
    with pytest.raises(llm_ppo.RunInterrupted, match="during the evaluation.*--resume"):
        llm_ppo.train(llm_ppo.LLMPPOConfig(resume=str(out), quiet=True))
    assert not (out / "results.json").exists()
    monkeypatch.setattr(llm_ppo, "episode_update", update)
    monkeypatch.setattr(llm_ppo, "_evaluate", real_evaluate)
    trained[:] = []
    run = llm_ppo.train(llm_ppo.LLMPPOConfig(resume=str(out), quiet=True))
    assert trained == []  # trained already: only evaluated
    assert run.config.tasks == TASKS and run.config.out == str(out)
    assert _results(out) == _results(straight)
    for task in TASKS:
        assert _same(_weights(out / "adapters" / task), _weights(straight / "adapters" / task))
    assert not (out / "resume").exists()
    with pytest.raises(ValueError, match="resume.*finished"):
        llm_ppo.train(llm_ppo.LLMPPOConfig(resume=str(out)))


def _ctrl_c_at(monkeypatch, call):
    """``episode_update`` raising KeyboardInterrupt at its ``call``-th call (1-based; None:
    never); returns the list of the tasks it was called for."""
    real, calls = llm_ppo.episode_update, []

    def update(learner, task, *args, **kwargs):
        calls.append(task)
        if len(calls) == call:
            raise KeyboardInterrupt
        return real(learner, task, *args, **kwargs)

    monkeypatch.setattr(llm_ppo, "episode_update", update)
    return calls


def test_llm_ppo_resumed_after_ctrl_c_inside_a_task_gives_the_results_of_the_run_never_stopped(
        tmp_path, monkeypatch):
    settings = {**LLM, "updates": 3}
    straight = tmp_path / "straight"
    llm_ppo.train(llm_ppo.LLMPPOConfig(**settings, out=str(straight)))
    out = tmp_path / "run"

    # Ctrl-C in the third update of the first task: its first two are kept.
    calls = _ctrl_c_at(monkeypatch, 3)
    with pytest.raises(llm_ppo.RunInterrupted,
                       match=f"0 of 2 tasks finished, 2 of 3 updates of {TASKS[0]} kept, saved "
                             f"in .*resume; continue with: .*--resume"):
        llm_ppo.train(llm_ppo.LLMPPOConfig(**settings, out=str(out)))
    state = json.loads((out / "resume" / "state.json").read_text())
    assert state["tasks"] == {} and state["in_progress"]["task"] == TASKS[0]
    assert len(state["in_progress"]["updates"]) == 2
    assert int(load_file(out / "resume" / llm_ppo.LEARNER)["updates"]) == 2

    # Resumed: the first task's last update, then Ctrl-C in the second update of the second.
    calls = _ctrl_c_at(monkeypatch, 3)
    with pytest.raises(llm_ppo.RunInterrupted,
                       match=f"1 of 2 tasks finished \\({TASKS[0]}\\), 1 of 3 updates of "
                             f"{TASKS[1]} kept"):
        llm_ppo.train(llm_ppo.LLMPPOConfig(resume=str(out), quiet=True))
    assert calls == [TASKS[0], TASKS[1], TASKS[1]]

    calls = _ctrl_c_at(monkeypatch, None)
    run = llm_ppo.train(llm_ppo.LLMPPOConfig(resume=str(out), quiet=True))
    assert calls == [TASKS[1], TASKS[1]]  # only the updates not kept
    assert [len(run.updates[t]) for t in TASKS] == [3, 3]
    assert _results(out) == _results(straight)
    for task in TASKS:
        assert _same(_weights(out / "adapters" / task), _weights(straight / "adapters" / task))
    assert not (out / "resume").exists()


@pytest.fixture(scope="module")
def in_progress_run(tmp_path_factory):
    """A run folder interrupted after the first of the two updates of its one task."""
    out = tmp_path_factory.mktemp("llm_ppo") / "run"
    with pytest.MonkeyPatch.context() as monkeypatch:
        _ctrl_c_at(monkeypatch, 2)
        with pytest.raises(llm_ppo.RunInterrupted, match="1 of 2 updates"):
            llm_ppo.train(llm_ppo.LLMPPOConfig(**{**LLM, "tasks": TASKS[:1], "updates": 2},
                                               out=str(out)))
    return out


def _edit_state(resume, change):
    path = resume / "state.json"
    state = json.loads(path.read_text())
    change(state["in_progress"])
    path.write_text(json.dumps(state))


def _edit_learner(resume, change):
    from safetensors.numpy import save_file

    tensors = load_file(resume / llm_ppo.LEARNER)
    change(tensors)
    save_file(tensors, resume / llm_ppo.LEARNER)


def _drop_a_slot(tensors):
    del tensors[next(k for k in sorted(tensors) if k.endswith("/exp_avg"))]


BAD_IN_PROGRESS = {
    "learner file missing": (lambda r: (r / llm_ppo.LEARNER).unlink(), "learner.safetensors is "
                                                                         "missing"),
    "learner file corrupt": (lambda r: (r / llm_ppo.LEARNER).write_bytes(b"\0" * 64),
                             "learner.safetensors does not load"),
    "update beyond updates": (lambda r: _edit_state(
        r, lambda s: s["updates"].extend(s["updates"] * 2)), "3 updates of .* a task has 2"),
    "count differs": (lambda r: _edit_learner(
        r, lambda t: t.update(updates=np.array(t["updates"] + 1))), "counts 2 updates, the "
                                                                     "state 1"),
    "a moment missing": (lambda r: _edit_learner(r, _drop_a_slot), "lacks 1 AdamW slots"),
    "not finite": (lambda r: _edit_learner(
        r, lambda t: t.update({"value_head.bias": np.full_like(t["value_head.bias"], np.nan)})),
        "value_head.bias is not finite"),
    "another task": (lambda r: _edit_state(r, lambda s: s.update(task=TASKS[1])),
                     "not the one after the finished tasks"),
    "bad rng": (lambda r: _edit_state(r, lambda s: s.update(rng={"bit_generator": "MT19937"})),
                "invalid rng"),
    "adapter missing": (lambda r: (r / "adapters" / TASKS[0] / "adapter_config.json").unlink(),
                        "its adapter .* is missing"),
}


def _files(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.mark.parametrize("case", BAD_IN_PROGRESS)
def test_llm_ppo_resume_refuses_a_bad_task_in_progress_and_changes_nothing(case, in_progress_run,
                                                                          tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(in_progress_run, out)
    spoil, reason = BAD_IN_PROGRESS[case]
    spoil(out / "resume")
    before = _files(out)
    with pytest.raises(ValueError, match=f"resume.*{reason}") as err:
        llm_ppo.train(llm_ppo.LLMPPOConfig(resume=str(out), quiet=True))
    assert err.value.field == "resume"
    assert main(["train", "llm-ppo", "--resume", str(out), "--quiet"]) == 2
    message = capsys.readouterr().err.strip()
    assert len(message.splitlines()) == 1 and "argument --resume: invalid value" in message
    assert _files(out) == before
