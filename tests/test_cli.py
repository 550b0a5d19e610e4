"""The ``sandbox-rl`` command line: a short traced run, and one-line usage errors."""

from __future__ import annotations

import os
import sqlite3

import pytest

from sandbox_rl.cli import main


def test_simulate_writes_trace(tmp_path, capsys) -> None:
    path = tmp_path / "t.db"
    argv = ["simulate", "--users", "200", "--steps", "3", "--seed", "1", "--trace", str(path)]
    assert main(argv) == 0
    db = sqlite3.connect(path)
    try:
        posts = db.execute("SELECT COUNT(*) FROM post").fetchone()[0]
    finally:
        db.close()
    assert posts > 0
    out = capsys.readouterr().out
    assert "total_edges" in out and "user-steps/s" in out and "Trace rows" in out


def _exit_status(argv: list[str]) -> int:
    """The status ``main`` returns, or the one argparse exits with."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code)


@pytest.mark.parametrize(("argv", "flag"), [
    (["--recsys", "foo"], "--recsys"),
    (["--users", "3"], "--users"),
    (["--users", "many"], "--users"),
    (["--steps", "0"], "--steps"),
])
def test_bad_option_is_a_usage_error(argv: list[str], flag: str, capsys) -> None:
    assert _exit_status(["simulate", *argv, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert flag in err and err.count("\n") == 1


def test_foreign_trace_file_is_refused(tmp_path, capsys) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("keep me\n")
    assert _exit_status(["simulate", "--users", "50", "--steps", "1", "--quiet",
                         "--trace", str(path)]) == 2
    assert "notes.txt" in capsys.readouterr().err
    assert path.read_text() == "keep me\n"


def test_existing_trace_is_kept_without_overwrite(tmp_path, capsys) -> None:
    trace = tmp_path / "t.db"
    args = ["simulate", "--users", "200", "--steps", "2", "--quiet", "--trace", str(trace)]
    assert main(args) == 0
    before = trace.read_bytes()
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert trace.read_bytes() == before
    assert main([*args, "--overwrite"]) == 0


# ---------------------------------------------------------------------- train
TINY_SB3 = ["--users", "200", "--episode-steps", "16", "--timesteps", "64", "--n-envs", "2",
            "--n-steps", "32", "--batch-size", "32", "--n-epochs", "1", "--eval-seeds", "50",
            "51", "--eval-steps", "5", "--no-progress"]


def test_train_sb3_prints_the_evaluation_table(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["train", "sb3", "--task", "network_optimization", "--out", str(out),
                 *TINY_SB3]) == 0
    text = capsys.readouterr().out
    assert "network_optimization" in text and "heuristic" in text and "random" in text
    assert (out / "model.zip").is_file()
    assert main(["train", "sb3", "--out", str(out), *TINY_SB3]) == 1     # a finished run is kept
    assert "--overwrite" in capsys.readouterr().err


@pytest.mark.parametrize(("trainer", "fields"), [
    ("sb3", {"task": "user_engagement", "timesteps": 5, "eval_seeds": (9, 10)}),
    ("supersuit", {"timesteps": 7, "n_envs": 3, "progress": False}),
    ("rllib", {"address": "auto", "num_env_runners": 2}),
])
def test_train_flags_are_the_config_fields(trainer: str, fields: dict) -> None:
    from sandbox_rl.cli import build_parser, trainers
    from sandbox_rl.training.common import config_from_args

    argv = ["train", trainer]
    for name, value in fields.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + flag[2:])
        else:
            argv += [flag, *map(str, value if isinstance(value, tuple) else [value])]
    config = config_from_args(trainers()[trainer].config, build_parser().parse_args(argv))
    assert {name: getattr(config, name) for name in fields} == fields


@pytest.mark.parametrize(("argv", "flag"), [
    (["sb3", "--task", "foo"], "--task"),
    (["sb3", "--timesteps", "0"], "--timesteps"),
    (["sb3", "--seed", "2", "--eval-seeds", "3"], "--eval-seeds"),
    (["supersuit", "--batch-size", "1"], "--batch-size"),
    (["rllib", "--num-env-runners", "-1"], "--num-env-runners"),
    (["rllib", "--learning-rate", "fast"], "--learning-rate"),
])
def test_bad_train_option_is_a_usage_error(argv: list[str], flag: str, capsys) -> None:
    assert _exit_status(["train", *argv]) == 2
    err = capsys.readouterr().err
    assert flag in err and err.count("\n") == 1


def test_train_without_a_trainer_is_a_usage_error(capsys) -> None:
    assert _exit_status(["train"]) == 2
    assert "TRAINER" in capsys.readouterr().err


# ---------------------------------------------------------------------- user errors
def _one_line_usage_error(argv: list[str], flag: str, capsys) -> str:
    """Run ``argv``; assert a one-line usage error naming ``flag``; return the line."""
    assert _exit_status(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert f"argument {flag}:" in err, err
    return err


@pytest.mark.parametrize("users", ["10", "21"])
def test_too_few_users_names_the_users_flag(users: str, capsys) -> None:
    err = _one_line_usage_error(["simulate", "--users", users, "--steps", "1", "--quiet"],
                                "--users", capsys)
    assert "mean_follows=" in err and "invalid num_users" not in err


def _unwritable_traces(tmp_path) -> list:
    afile = tmp_path / "notes.txt"
    afile.write_text("keep me\n")
    paths = [afile / "t.db", afile / "sub" / "t.db", tmp_path / ("x" * 300) / "t.db"]
    if os.path.isdir("/proc/self"):  # a place even root cannot create a file
        paths.append("/proc/sandbox-rl-test.db")
    return paths


def test_unwritable_trace_is_a_usage_error(tmp_path, capsys) -> None:
    for path in _unwritable_traces(tmp_path):
        _one_line_usage_error(["simulate", "--users", "50", "--steps", "1", "--quiet",
                               "--trace", str(path)], "--trace", capsys)
    assert (tmp_path / "notes.txt").read_text() == "keep me\n"
    _one_line_usage_error(["simulate", "--users", "50", "--steps", "1", "--quiet", "--trace",
                           str(tmp_path)], "--trace", capsys)  # a folder


def test_evolve_bad_users_is_a_usage_error_naming_users(tmp_path, capsys) -> None:
    err = _one_line_usage_error(["evolve", "--users", "10", "--steps", "1", "--quiet",
                                 "--out", str(tmp_path / "run")], "--users", capsys)
    assert "num_users" not in err
    assert not (tmp_path / "run").exists()  # checked before the run folder is made


def test_evolve_out_that_is_a_file_is_a_usage_error(tmp_path, capsys) -> None:
    afile = tmp_path / "notes.txt"
    afile.write_text("keep me\n")
    for out in (afile, afile / "run"):
        _one_line_usage_error(["evolve", "--steps", "1", "--quiet", "--out", str(out)],
                              "--out", capsys)
    assert afile.read_text() == "keep me\n"


@pytest.mark.parametrize(("argv", "flag"), [
    (["evolve", "--steps", "0"], "--steps"),
    (["evolve", "--pool-size", "0"], "--pool-size"),
    (["evolve", "--strategy", "magic"], "--strategy"),
    (["evaluate", "--adapters", "untrained", "--users", "12"], "--users"),
    (["train", "sb3", "--users", "12", "--timesteps", "8", "--no-progress"], "--users"),
])
def test_other_commands_name_the_flag(argv: list[str], flag: str, capsys, tmp_path) -> None:
    if argv[0] in ("evolve", "train"):
        argv = [*argv, "--out", str(tmp_path / "run")]
    _one_line_usage_error(argv, flag, capsys)


def test_the_flag_comes_from_the_errors_field_not_its_text() -> None:
    from sandbox_rl.cli import _naming_flag
    from sandbox_rl.validation import InvalidPath, InvalidValue

    flags = {"num_users": "--users", "world": "--world", "out": "--out"}
    err = InvalidValue("num_users", 10, "an integer >= 22")
    assert _naming_flag(err, flags, {}) == ("argument --users: invalid value 10: expected an "
                                            "integer >= 22")
    # A value whose text holds ": " and "=" is quoted whole (a pattern over the text split it).
    err = InvalidValue("world", {"recsys=x": "a: b"}, "known options")
    assert _naming_flag(err, flags, {}) == ("argument --world: invalid value {'recsys=x': "
                                            "'a: b'}: expected known options")
    assert _naming_flag(InvalidPath("out", "/f", "a folder"), flags, {}).startswith(
        "argument --out: invalid value '/f':")
    # Prose that only looks like an option error names no flag; the error type may.
    assert _naming_flag(ValueError("invalid num_users=10: expected more"), flags, {}) is None
    assert _naming_flag(ValueError("invalid num_users=10: x"), flags,
                        {ValueError: "--model"}) == "argument --model: invalid num_users=10: x"
    # A field no flag sets, or an error in its own words, falls to its type.
    assert _naming_flag(InvalidValue("rank", 0, "an integer"), flags, {}) is None
    own_words = InvalidValue("num_users", 1, "x", message="num_users must be large")
    assert _naming_flag(own_words, flags, {}) is None
