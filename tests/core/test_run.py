"""The main job (``sandbox-rl evolve``) on a tiny model: summary figures and table."""

import json

from sandbox_rl.core.run import EvolveRunConfig, run_evolution


def test_evolve_summary_has_references_and_paired_intervals(tmp_path):
    out = tmp_path / "run"
    summary = run_evolution(EvolveRunConfig(steps=4, model="tiny-llama", users=200, pool_size=2,
                                            evolution_interval=2, out=str(out), quiet=True))
    saved = json.loads((out / "summary.json").read_text())
    assert set(saved["tasks"]) == set(summary["tasks"]) and len(saved["tasks"]) == 5
    for task, t in saved["tasks"].items():
        for key in ("mean", "first_half", "second_half", "heuristic", "random"):
            assert 0.0 <= t[key] <= 1.0, (task, key)
        for kind in ("heuristic", "random"):
            d = t[f"minus_{kind}"]
            assert abs(d["mean"] - (t["mean"] - t[kind])) < 1e-9
            assert d["ci95"][0] <= d["mean"] <= d["ci95"][1]
        # the heuristic's action written as text: only where the env reads text through models
        assert ("heuristic_text" in t) == (task == "content_generation"), task
    text = saved["tasks"]["content_generation"]
    assert 0.0 <= text["heuristic_text"] <= 1.0
    assert abs(text["minus_heuristic_text"]["mean"] - (text["mean"] - text["heuristic_text"])) < 1e-9
    assert (out / "plots" / "scores.png").exists()
