"""Every example runs on a tiny budget; its flags (tyro) have help texts and the defaults of the
command it mirrors."""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import re
import runpy
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
ALL_EXAMPLES = sorted(p.name for p in EXAMPLES.glob("*.py"))
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="extra rllib not installed")


@pytest.mark.parametrize("argv,expect", [
    (["examples/quickstart.py", "--users", "200", "--steps", "3"], "mean reward"),
    (["examples/llm_agents.py", "--model", "tiny-llama", "--users", "200", "--steps", "2"],
     "trend_prediction"),
    (["examples/sb3_ppo.py", "--task", "trend_prediction", "--timesteps", "64", "--users", "200",
      "--episode-steps", "16", "--n-envs", "2", "--n-steps", "32", "--batch-size", "32",
      "--eval-seeds", "1000", "1001", "--eval-steps", "5"], "heuristic"),
    (["examples/supersuit_ppo.py", "--timesteps", "160", "--users", "200", "--episode-steps",
      "16", "--n-envs", "1", "--n-steps", "16", "--batch-size", "80", "--eval-seeds", "1000",
      "1001", "--eval-steps", "5"], "behavior_analysis"),
    pytest.param(["examples/rllib_ppo.py", "--iterations", "1", "--users", "200",
                  "--episode-steps", "10", "--num-env-runners", "0", "--train-batch-size", "40",
                  "--minibatch-size", "40", "--eval-seeds", "1000", "1001", "--eval-steps", "5"],
                 "user_engagement", marks=needs_ray),
])
def test_example_runs(argv, expect, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("SB3_LOGDIR", str(tmp_path))  # SB3's logger folder, else a new /tmp/SB3-*
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(argv[0], run_name="__main__")
    assert expect in capsys.readouterr().out


GUIDE_ARGS = ["--model", "tiny-llama", "--users", "100", "--threads", "1"]


@pytest.mark.parametrize("argv,expect,written", [
    (["examples/guide_quickstart.py", "--steps", "2", "--evolution-interval", "2",
      "--pool-size", "2", "--log-dir", "{tmp}/logs"],
     ["step 2: evolution step 1 |", "trend_prediction="], "logs/metrics.jsonl"),
    # Threshold 0: every task is at or above it, so ranks halve whatever the tiny model answers.
    (["examples/guide_strategies.py", "--strategy", "adaptive_compression", "--steps", "2",
      "--evolution-interval", "1", "--pool-size", "2", "--performance-threshold", "0",
      "--log-dir", "{tmp}/logs"],
     ["event lora_rank: task=", "adaptive_compression: 2 evolution steps"], "logs/metrics.jsonl"),
    (["examples/guide_advanced.py", "--steps", "2", "--out", "{tmp}"],
     ["load_state -> True (at step 2)", "model pool size: 3",
      "performance score: "], "state/manifest.json"),
    (["examples/guide_complete.py", "--steps", "3", "--pool-size", "2", "--out", "{tmp}"],
     ["=== 最终结果 ===\n总步骤: 3", "模型池大小: 2", "状态已保存: True"],
     "final_state/manifest.json"),
], ids=["quickstart", "strategies", "advanced", "complete"])
def test_guide_example_runs(argv, expect, written, tmp_path, monkeypatch, capsys):
    import torch

    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv] + GUIDE_ARGS
    monkeypatch.setattr(sys, "argv", argv)
    threads = torch.get_num_threads()
    try:
        runpy.run_path(argv[0], run_name="__main__")
    finally:
        torch.set_num_threads(threads)  # --threads is process-wide; later tests keep theirs
    out = capsys.readouterr().out
    assert all(e in out for e in expect), out
    assert (tmp_path / written).is_file()


def _exit_status(argv: list[str], monkeypatch) -> int:
    monkeypatch.setenv("COLUMNS", "300")  # tyro fits its help to the terminal: no wrapping
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as stop:
        runpy.run_path(argv[0], run_name="__main__")
    return stop.value.code


def test_guide_strategies_rejects_an_unknown_strategy(monkeypatch, capsys):
    assert _exit_status(["examples/guide_strategies.py", "--strategy", "greedy"], monkeypatch) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "invalid choice 'greedy' for argument '--strategy'" in err
    assert "meta_learning" in err  # the message lists the choices


# ---------------------------------------------------------------------- the flags
def _field_docs(example: str) -> dict[str, str]:
    """Each field of the example's ``Args`` -> its docstring (the string below it), from source."""
    tree = ast.parse((EXAMPLES / example).read_text(encoding="utf-8"))
    (args,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Args"]
    docs, body = {}, args.body
    for node, after in zip(body, [*body[1:], None]):
        if isinstance(node, ast.AnnAssign):
            doc = after.value.value if (isinstance(after, ast.Expr)
                                        and isinstance(after.value, ast.Constant)) else ""
            docs[node.target.id] = " ".join(str(doc).split())
    return docs


def _help_entries(text: str) -> dict[str, str]:
    """tyro's help box (drawn in ASCII when not on a terminal) as {first flag of an option: its
    help text}."""
    entries: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip().strip("│").strip()
        if re.fullmatch(r"[-─╭╮╰╯ ]*", line):  # a rule or an empty line
            continue
        if line.startswith("-"):
            # "--flag METAVAR  help", or the flag alone when the help starts on the next line
            invocation, _, help_text = (re.split(r"(\s{2,})", line, maxsplit=1) + ["", ""])[:3]
            current = re.split(r"[ ,]", invocation)[0]
            entries[current] = [help_text]
        elif current is not None:
            entries[current].append(line)
    return {flag: " ".join(" ".join(parts).split()) for flag, parts in entries.items()}


@pytest.mark.parametrize("example", ALL_EXAMPLES)
def test_every_flag_of_an_example_has_a_help_text(example, monkeypatch, capsys):
    assert _exit_status([f"examples/{example}", "--help"], monkeypatch) == 0
    entries = _help_entries(capsys.readouterr().out)
    docs = _field_docs(example)
    assert docs, f"{example} has no Args fields"
    flags = {"--" + name.replace("_", "-"): doc for name, doc in docs.items()}
    assert set(entries) == {"-h", *flags}, entries
    for flag, doc in flags.items():
        assert doc, f"{example}: {flag} has no docstring"
        assert re.fullmatch(re.escape(doc) + r" \(default: .*\)", entries[flag]), \
            (flag, entries[flag])


def _load(example: str, monkeypatch):
    """The example as a module (its main() not run), registered so tyro can read its source."""
    spec = importlib.util.spec_from_file_location(f"example_{example[:-3]}", EXAMPLES / example)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def test_a_boolean_option_is_a_flag(monkeypatch):
    import tyro

    args = _load("quickstart.py", monkeypatch).Args
    monkeypatch.setenv("COLUMNS", "300")
    assert tyro.cli(args, args=[]).tweets is True
    assert tyro.cli(args, args=["--no-tweets"]).tweets is False
    assert tyro.cli(args, args=["--no-tweets", "--tweets"]).tweets is True
    with pytest.raises(SystemExit) as stop:  # argparse's type=bool read "False" as True
        tyro.cli(args, args=["--tweets", "False"])
    assert stop.value.code == 2


def test_a_wrong_type_is_refused(monkeypatch, capsys):
    assert _exit_status(["examples/quickstart.py", "--users", "many"], monkeypatch) == 2
    assert "--users" in capsys.readouterr().err


# ---------------------------------------------------------------------- the mirrored commands
def _defaults(cls) -> dict:
    return {f.name: f.default for f in dataclasses.fields(cls)}


@pytest.mark.parametrize("example,config,differ", [
    ("sb3_ppo.py", "sandbox_rl.training.sb3:SB3Config", set()),
    ("supersuit_ppo.py", "sandbox_rl.training.shared_policy:SharedPolicyConfig", set()),
    ("rllib_ppo.py", "sandbox_rl.training.rllib:RLlibConfig", {"iterations", "address"}),
])
def test_a_training_example_has_its_command_defaults(example, config, differ, monkeypatch):
    module_name, _, name = config.partition(":")
    command = _defaults(getattr(importlib.import_module(module_name), name))
    ours = _defaults(_load(example, monkeypatch).Args)
    assert not set(ours) - set(command) - differ
    assert {k: v for k, v in ours.items() if k not in differ} == \
        {k: command[k] for k in ours if k not in differ}
    if "iterations" in differ:  # train_batch_size env steps per iteration
        assert ours["iterations"] * ours["train_batch_size"] == command["timesteps"]
        assert ours["address"] == "" and command["address"] is None  # both: start Ray locally


def test_quickstart_has_the_defaults_of_simulate(monkeypatch):
    from sandbox_rl.cli import build_parser

    simulate = vars(build_parser().parse_args(["simulate"]))
    ours = _defaults(_load("quickstart.py", monkeypatch).Args)
    assert ours == {k: simulate[k] for k in ours}


def test_llm_agents_shares_the_defaults_of_evaluate_and_llm_ppo(monkeypatch):
    from sandbox_rl.cli import build_parser
    from sandbox_rl.training.llm_ppo import LLMPPOConfig

    evaluate = vars(build_parser().parse_args(["evaluate", "--adapters", "untrained"]))
    llm_ppo = _defaults(LLMPPOConfig)
    ours = _defaults(_load("llm_agents.py", monkeypatch).Args)
    for name in ("model", "users", "seed", "threads"):
        assert ours[name] == evaluate[name] == llm_ppo[name], name
    assert ours["lora_rank"] == llm_ppo["lora_rank"]
