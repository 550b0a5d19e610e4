"""Every code block of the user guide runs as written (docs/self_evolving_oasis_guide.zh.md).

The English translation (docs/guide.md) must carry the very same python blocks, in the same order,
so running the Chinese guide's blocks runs the English guide's too.

The blocks run in order in one namespace, as a reader pasting them into one session would
(later blocks use names earlier ones imported). The fast suite runs them on a tiny random model
(``SANDBOX_RL_DEFAULT_MODEL=tiny-llama``); the slow test on the embedded model.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
GUIDE = DOCS / "self_evolving_oasis_guide.zh.md"
GUIDE_EN = DOCS / "guide.md"


def guide_blocks(path: Path = GUIDE) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)


def run_guide(monkeypatch, tmp_path, model: str) -> dict:
    monkeypatch.setenv("SANDBOX_RL_DEFAULT_MODEL", model)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__main__"}
    for block in guide_blocks():
        if "**config.__dict__" in block:
            # Python rejects this call before any of our code runs: the block passes
            # evolution_strategy both by name and inside config.__dict__.
            with pytest.raises(TypeError, match="multiple values for keyword argument"):
                exec(compile(block, str(GUIDE), "exec"), namespace)
            continue
        exec(compile(block, str(GUIDE), "exec"), namespace)
    return namespace


def test_guide_has_the_blocks_we_expect():
    blocks = guide_blocks()
    assert len(blocks) == 20
    assert sum("**config.__dict__" in b for b in blocks) == 1


def test_english_guide_has_exactly_the_chinese_guides_code_blocks():
    assert guide_blocks(GUIDE_EN) == guide_blocks(GUIDE)
    text = GUIDE_EN.read_text(encoding="utf-8")
    assert "self_evolving_oasis_guide.zh.md" in text.splitlines()[0]
    # every fence in the English guide is one of those python blocks (none hidden in another fence)
    assert text.count("```") == 2 * len(guide_blocks(GUIDE))


def test_every_guide_block_runs_on_a_tiny_model(monkeypatch, tmp_path, capsys):
    ns = run_guide(monkeypatch, tmp_path, "tiny-llama")
    out = capsys.readouterr().out
    assert ns["success"] is True  # the state block saved and loaded back
    assert (tmp_path / "data" / "final_state" / "manifest.json").is_file()
    assert all(0.0 <= r["performance_score"] <= 1.0 for r in ns["result"]["tasks"].values())
    assert "=== 最终结果 ===" in out and "总步骤: 20" in out
    assert "步骤 10: 进化步骤 3" in out  # basic usage: 10 steps, evolution_interval=3
    assert "进化步骤: 6" in out  # the complete example: 20 steps, evolution_interval=3
    assert ns["evolution_stats"]["evolution_strategy"] == "multi_model"


@pytest.mark.slow
def test_every_guide_block_runs_on_the_embedded_model(monkeypatch, tmp_path, capsys):
    ns = run_guide(monkeypatch, tmp_path, "embedded")
    assert ns["success"] is True
    assert "总步骤: 20" in capsys.readouterr().out
