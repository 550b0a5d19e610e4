"""``train agents`` / ``train llm-ppo``: Ctrl-C keeps the finished tasks and the rounds or
updates of the task in progress, ``--resume RUN`` trains only the rest (tiny model)."""

from __future__ import annotations

import functools
import json
import os
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file

from sandbox_rl.cli import main
from sandbox_rl.training import agents_trainer, llm_ppo
from sandbox_rl.training import expert_iteration as ei
from sandbox_rl.training.common import EVALUATIONS

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

    def train_task(adapters, task, cfg, *rest):
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
    # A point with no task in progress, as an earlier version saved them: it still resumes.
    assert "in_progress" not in state and sorted(os.listdir(out / "resume")) == [
        "adapters", "state.json"]
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
    assert all((out / name).is_file() for name in EVALUATIONS)
    assert not (out / "resume").exists()
    assert main(["train", "agents", "--resume", str(out)]) == 2
    assert "it finished" in capsys.readouterr().err


def test_agents_resume_runs_where_the_command_says(tmp_path, fake_training):
    """A run made on Ray resumes here unless --ray-address is given again (its cluster may be
    gone); --ray-address and --workers may change."""
    out = tmp_path / "run"
    fake_training.interrupt[0] = TASKS[1]
    assert main([*AGENTS, "--out", str(out)]) == 130
    state_file = out / "resume" / "state.json"
    state = json.loads(state_file.read_text())
    state["config"].update(ray_address="10.0.0.9:6379", workers=4, worker_threads=2)
    state_file.write_text(json.dumps(state))
    here = agents_trainer.resume_config(agents_trainer.AgentsConfig(resume=str(out)), set())
    assert here.ray_address is None and here.workers is None and here.worker_threads is None
    there = agents_trainer.resume_config(
        agents_trainer.AgentsConfig(resume=str(out), ray_address="local", workers=2),
        {"ray_address", "workers"})
    assert (there.ray_address, there.workers) == ("local", 2)


def test_agents_run_saved_before_the_enumeration_resumes_without_it(tmp_path, fake_training):
    """A run saved before ``enumerate_proposals`` existed proposed samples on every task: it
    resumes so; a run saved since keeps what it saved."""
    out = tmp_path / "run"
    fake_training.interrupt[0] = TASKS[1]
    assert main([*AGENTS, "--out", str(out)]) == 130
    state_file = out / "resume" / "state.json"
    state = json.loads(state_file.read_text())
    assert state["config"]["enumerate_proposals"] is True  # the default now
    resumed = agents_trainer.resume_config(agents_trainer.AgentsConfig(resume=str(out)), set())
    assert resumed.enumerate_proposals is True
    del state["config"]["enumerate_proposals"], state["config"]["enumeration_draws"]
    state_file.write_text(json.dumps(state))
    resumed = agents_trainer.resume_config(agents_trainer.AgentsConfig(resume=str(out)), set())
    assert resumed.enumerate_proposals is False and resumed.enumeration_draws == 32


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
    assert all((out / name).is_file() for name in EVALUATIONS)


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


# ------------------------------------------------------------------- agents: within a task
# Three expert-iteration rounds of one task (the hour's budget is never reached), no PPO.
ROUNDS = 3
AGENT = dict(model="tiny-llama", tasks=TASKS[:1], minutes=60.0, users=200, world_steps=2,
             states_per_round=2, samples=1, draws=2, validation_seeds=(900,),
             eval_seeds=(1000,), eval_steps=2, ppo_share=0.0, threads=1, quiet=True)


def _fixed_rounds(monkeypatch, interrupt=None):
    """``ROUNDS`` rounds a task, no evaluation, Ctrl-C at the ``interrupt``-th call of
    ``collect_examples`` (1-based; None: never); returns the examples of each call."""
    # Patched where it is looked up: agents_trainer imports the name.
    monkeypatch.setattr(agents_trainer, "run_rounds",
                        functools.partial(ei.run_rounds, max_rounds=ROUNDS))
    monkeypatch.setattr(agents_trainer, "_evaluate", lambda *args: {})
    real, collected = ei.collect_examples, []

    def collect(*args, **kwargs):
        if len(collected) + 1 == interrupt:
            raise KeyboardInterrupt
        collected.append(real(*args, **kwargs))
        return collected[-1]

    monkeypatch.setattr(ei, "collect_examples", collect)
    return collected


def _log(out):
    """The saved training log, without wall times (JSON text: a NaN loss compares equal)."""
    tasks = json.loads((out / "training.json").read_text())["tasks"]
    for log in tasks.values():
        log.pop("seconds")
        for row in log["rounds"]:
            row.pop("seconds")
    return json.dumps(tasks, sort_keys=True)


def _examples(examples):
    return [{**e.__dict__, "reward": float(e.reward), "greedy_reward": float(e.greedy_reward)}
            for e in examples]


def test_agents_resumed_after_ctrl_c_between_rounds_gives_the_run_never_stopped(tmp_path):
    task = TASKS[0]
    straight = tmp_path / "straight"
    with pytest.MonkeyPatch.context() as monkeypatch:
        expected = _fixed_rounds(monkeypatch)
        agents_trainer.train_agents(agents_trainer.AgentsConfig(**AGENT, out=str(straight)))
    assert len(expected) == ROUNDS and any(expected)

    # Ctrl-C in the second round: the first is kept.
    out = tmp_path / "run"
    with pytest.MonkeyPatch.context() as monkeypatch:
        first = _fixed_rounds(monkeypatch, interrupt=2)
        with pytest.raises(agents_trainer.RunInterrupted,
                           match=f"0 of 1 tasks finished, 1 expert-iteration round of {task} "
                                 f"kept, saved in .*resume; continue with: .*--resume"):
            agents_trainer.train_agents(agents_trainer.AgentsConfig(**AGENT, out=str(out)))
    resume = out / "resume"
    state = json.loads((resume / "state.json").read_text())
    current = state["in_progress"]
    assert state["tasks"] == {} and current["task"] == task and current["phase"] == "rounds"
    assert current["done"] == len(current["rounds"]) == 1
    assert current["worlds"] == {"collected": 1, "taken": 2} and current["seconds"] > 0
    assert json.loads((resume / agents_trainer.EXAMPLES).read_text()) == _examples(expected[0])
    assert sorted(load_file(resume / agents_trainer.BEST)) == sorted(
        _weights(resume / "adapters" / task))

    # Resumed: rounds 2 and 3, then Ctrl-C as the PPO phase starts.
    with pytest.MonkeyPatch.context() as monkeypatch:
        rest = _fixed_rounds(monkeypatch)

        def ppo(*args):
            raise KeyboardInterrupt

        monkeypatch.setattr(agents_trainer, "_ppo_phase", ppo)
        with pytest.raises(agents_trainer.RunInterrupted,
                           match=f"3 expert-iteration rounds of {task} kept \\(its PPO phase "
                                 f"starts again\\)"):
            agents_trainer.train_agents(agents_trainer.AgentsConfig(resume=str(out), quiet=True))
    assert [_examples(e) for e in first + rest] == [_examples(e) for e in expected]
    current = json.loads((resume / "state.json").read_text())["in_progress"]
    assert current["phase"] == "ppo" and current["done"] == ROUNDS

    # Resumed at the PPO phase: no round again, the numbers of the run never stopped.
    with pytest.MonkeyPatch.context() as monkeypatch:
        again = _fixed_rounds(monkeypatch)
        agents_trainer.train_agents(agents_trainer.AgentsConfig(resume=str(out), quiet=True))
    assert again == []
    assert _log(out) == _log(straight)
    assert _same(_weights(out / "adapters" / task), _weights(straight / "adapters" / task))
    assert not resume.exists()


def test_training_worlds_restored_to_a_position_continue_the_stream():
    def stream():
        return agents_trainer.TrainingWorlds(TASKS[0], 0, 2, 200)

    def text(states):
        return [e.steps[i].observation for e, i in states]

    straight = stream()
    straight(3)
    position = straight.position()
    assert position == {"collected": 2, "taken": 3}
    restored = stream()
    restored.restore(**position)
    assert text(restored(3)) == text(straight(3))
    assert restored.position() == straight.position() == {"collected": 3, "taken": 6}
    assert [e.seed for e in restored.episodes] == [e.seed for e in straight.episodes]
    for bad in ({"collected": 2, "taken": 2}, {"collected": 1, "taken": 3},
                {"collected": 0, "taken": 1}):
        with pytest.raises(ValueError, match="not a position"):
            stream().restore(**bad)


@pytest.fixture(scope="module")
def rounds_run(tmp_path_factory):
    """A run folder interrupted in the second round of its one task."""
    out = tmp_path_factory.mktemp("agents") / "run"
    with pytest.MonkeyPatch.context() as monkeypatch:
        _fixed_rounds(monkeypatch, interrupt=2)
        with pytest.raises(agents_trainer.RunInterrupted, match="1 expert-iteration round"):
            agents_trainer.train_agents(agents_trainer.AgentsConfig(**AGENT, out=str(out)))
    return out


def _edit_best(resume, change):
    _edit_tensors(resume / agents_trainer.BEST, change)


def _one_more_example(current):
    current["rounds"][0]["examples"] += 1


def _nan_weight(tensors):
    key = sorted(tensors)[0]
    tensors[key] = np.full_like(tensors[key], np.nan)


BAD_ROUNDS = {
    "examples missing": (lambda r: (r / agents_trainer.EXAMPLES).unlink(),
                         "examples.json is missing"),
    "examples corrupt": (lambda r: (r / agents_trainer.EXAMPLES).write_text("[{"),
                         "examples.json does not load"),
    "examples not examples": (lambda r: (r / agents_trainer.EXAMPLES).write_text('[{"a": 1}]'),
                              "examples.json is not a list of examples"),
    "examples miscounted": (lambda r: _edit_state(r, _one_more_example),
                            "examples.json holds .* examples, its round log"),
    "round index beyond the log": (lambda r: _edit_state(r, lambda c: c.update(done=2)),
                                   "round index 2 is not the count of its round log rows \\(1\\)"),
    "round log emptied": (lambda r: _edit_state(r, lambda c: c.update(rounds=[])),
                          "round index 1 is not the count"),
    "best missing": (lambda r: (r / agents_trainer.BEST).unlink(), "best.safetensors is missing"),
    "best corrupt": (lambda r: (r / agents_trainer.BEST).write_bytes(b"\0" * 64),
                     "best.safetensors does not load"),
    "best not finite": (lambda r: _edit_best(r, _nan_weight), "is not finite"),
    "best of another adapter": (lambda r: _edit_best(r, lambda t: t.pop(sorted(t)[0])),
                                "best weights .* are not weights of the adapter"),
    "worlds position": (lambda r: _edit_state(r, lambda c: c["worlds"].update(taken=3)),
                        "3 training states taken, but 1 rounds of 2 take 2"),
    "another task": (lambda r: _edit_state(r, lambda c: c.update(task=TASKS[1])),
                     "not the one after the finished tasks"),
    "bad phase": (lambda r: _edit_state(r, lambda c: c.update(phase="sft")), "invalid phase"),
    "adapter missing": (lambda r: (r / "adapters" / TASKS[0] / "adapter_config.json").unlink(),
                        "its adapter .* is missing"),
}


@pytest.mark.parametrize("case", BAD_ROUNDS)
def test_agents_resume_refuses_a_bad_task_in_progress_and_changes_nothing(case, rounds_run,
                                                                         tmp_path, capsys):
    _assert_refused(rounds_run, tmp_path, capsys, *BAD_ROUNDS[case], "agents",
                    lambda out: agents_trainer.train_agents(
                        agents_trainer.AgentsConfig(resume=str(out), quiet=True)))


def _assert_refused(run, tmp_path, capsys, spoil, reason, command, resume):
    """A copy of ``run`` whose resume point ``spoil`` changed is refused by ``resume(out)`` and
    by ``sandbox-rl train <command> --resume`` (a ValueError naming ``resume`` with ``reason``;
    exit 2 with a one-line message), and its files stay as they were."""
    out = tmp_path / "run"
    shutil.copytree(run, out)
    spoil(out / "resume")
    before = _files(out)
    with pytest.raises(ValueError, match=f"resume.*{reason}") as err:
        resume(out)
    assert err.value.field == "resume"
    assert main(["train", command, "--resume", str(out), "--quiet"]) == 2
    message = capsys.readouterr().err.strip()
    assert len(message.splitlines()) == 1 and "argument --resume: invalid value" in message
    assert _files(out) == before


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
             for name in EVALUATIONS for line in (out / name).read_text().splitlines()]
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
    """``change`` the resume point's task in progress (``state.json``)."""
    path = resume / "state.json"
    state = json.loads(path.read_text())
    change(state["in_progress"])
    path.write_text(json.dumps(state))


def _edit_tensors(path, change):
    """``change`` the tensors of the safetensors file ``path`` (NumPy arrays)."""
    from safetensors.numpy import save_file

    tensors = load_file(path)
    change(tensors)
    save_file(tensors, path)


def _edit_learner(resume, change):
    _edit_tensors(resume / llm_ppo.LEARNER, change)


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
    _assert_refused(in_progress_run, tmp_path, capsys, *BAD_IN_PROGRESS[case], "llm-ppo",
                    lambda out: llm_ppo.train(llm_ppo.LLMPPOConfig(resume=str(out), quiet=True)))
