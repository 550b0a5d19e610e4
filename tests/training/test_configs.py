"""The base configs of the trainers: who derives from what, and the shared rules, alike for all."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json

import pytest

from sandbox_rl.training.common import add_config_arguments, config_from_args
from sandbox_rl.training.configs import EnvPPOConfig, LLMTrainerConfig, RunConfig
from sandbox_rl.validation import InvalidValue

TRAINERS = [  # (module, config, its base)
    ("sandbox_rl.training.sb3", "SB3Config", EnvPPOConfig),
    ("sandbox_rl.training.shared_policy", "SharedPolicyConfig", EnvPPOConfig),
    ("sandbox_rl.training.rllib", "RLlibConfig", EnvPPOConfig),
    ("sandbox_rl.training.agents_trainer", "AgentsConfig", LLMTrainerConfig),
    ("sandbox_rl.training.llm_ppo", "LLMPPOConfig", LLMTrainerConfig),
]
IDS = [name for _, name, _ in TRAINERS]


def _config(module: str, name: str) -> type:
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize(("module", "name", "base"), TRAINERS, ids=IDS)
def test_each_trainer_config_derives_from_its_family(module: str, name: str, base: type) -> None:
    config = _config(module, name)
    assert issubclass(config, base) and issubclass(config, RunConfig)
    other = LLMTrainerConfig if base is EnvPPOConfig else EnvPPOConfig
    assert not issubclass(config, other)
    names = [f.name for f in dataclasses.fields(config)]
    assert names[:len(dataclasses.fields(base))] == [f.name for f in dataclasses.fields(base)]


@pytest.mark.parametrize(("module", "name", "base"), TRAINERS, ids=IDS)
@pytest.mark.parametrize(("field", "value"), [
    ("seed", -1), ("threads", 0), ("users", 9), ("learning_rate", 0.0), ("eval_seeds", ()),
])
def test_a_shared_rule_refuses_alike_naming_the_field(module: str, name: str, base: type,
                                                      field: str, value) -> None:
    with pytest.raises(InvalidValue) as info:
        _config(module, name)(**{field: value})
    assert info.value.field == field and info.value.value == value
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(("module", "name", "base"), TRAINERS, ids=IDS)
def test_a_family_rule_is_its_familys(module: str, name: str, base: type) -> None:
    config = _config(module, name)
    if base is EnvPPOConfig:  # worlds of 10 users or more; a run folder named
        assert config(users=10).users == 10
        for field, value in (("out", " "), ("gamma", 1.5), ("checkpoint_every", 0),
                             ("episode_steps", 0), ("timesteps", 0)):
            with pytest.raises(InvalidValue) as info:
                config(**{field: value})
            assert info.value.field == field
    else:  # worlds of 50 users or more, held-out seeds from 1000
        with pytest.raises(InvalidValue, match="users"):
            config(users=49)
        for field, value in (("eval_seeds", (999,)), ("lora_rank", 0), ("resume", " ")):
            with pytest.raises(InvalidValue) as info:
                config(**{field: value})
            assert info.value.field == field


@pytest.mark.parametrize(("module", "name", "base"), TRAINERS, ids=IDS)
def test_a_trainer_config_has_every_default_and_only_keywords(module: str, name: str,
                                                              base: type) -> None:
    config = _config(module, name)
    cfg = config()  # every field has a default (the flags' defaults)
    assert all(f.kw_only for f in dataclasses.fields(config))
    with pytest.raises(TypeError):  # never bound to whichever field comes first
        config(cfg.seed)
    saved = json.dumps(dataclasses.asdict(cfg))  # a run folder's config loads as it was
    assert json.dumps(dataclasses.asdict(config(**json.loads(saved)))) == saved
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, config)
    assert config_from_args(config, parser.parse_args([])) == cfg


@pytest.mark.parametrize("base", [RunConfig, EnvPPOConfig, LLMTrainerConfig])
def test_a_base_config_gives_no_flags(base: type) -> None:
    with pytest.raises(TypeError, match="no default"):
        add_config_arguments(argparse.ArgumentParser(), base)
