"""The ``sandbox-rl`` command line: a short traced run, and one-line usage errors."""

from __future__ import annotations

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
