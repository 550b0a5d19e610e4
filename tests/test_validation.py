"""``sandbox_rl.validation``: errors carry the field as data; typed ranges refuse NaN, inf, bools
as integers and out-of-range values with one message form."""

from __future__ import annotations

import importlib
import math
import pickle
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbox_rl.validation import (MAX_QUOTED, Custom, Flag, Int, InvalidInput, InvalidPath,
                                   InvalidValue, OneOf, Real, check_fields, require, shorten)


# ---------------------------------------------------------------------- the error
def test_error_carries_the_field_as_data_and_keeps_the_message_form() -> None:
    with pytest.raises(ValueError) as info:
        require(False, "num_users", 5, "an integer >= 10")
    err = info.value
    assert isinstance(err, InvalidValue) and isinstance(err, InvalidInput)
    assert (err.field, err.value, err.expected) == ("num_users", 5, "an integer >= 10")
    assert err.reason == "expected an integer >= 10" and err.quoted == "5"
    assert str(err) == "invalid num_users=5: expected an integer >= 10"


def test_require_passes_on_a_true_condition() -> None:
    require(True, "x", 1, "anything")
    require(np.bool_(True), "x", 1, "anything")


def test_reason_and_message_replace_the_wording_not_the_data() -> None:
    err = InvalidValue("mini_batch_size", 3, reason="it must divide rollouts_per_update=8")
    assert str(err) == "invalid mini_batch_size=3: it must divide rollouts_per_update=8"
    assert err.expected is None and err.reason == "it must divide rollouts_per_update=8"
    err = InvalidValue("dtype", "x", "one of a, b", message="dtype must be one of a, b; got 'x'")
    assert str(err) == "dtype must be one of a, b; got 'x'"
    assert (err.field, err.value, err.expected, err.reason) == ("dtype", "x", "one of a, b", None)
    with pytest.raises(TypeError):
        InvalidValue("x", 1)  # says nothing


def test_long_values_are_cut_in_the_message_but_kept_whole_as_data() -> None:
    value = "x" * 10_000
    err = InvalidValue("name", value, "a short name")
    assert err.value is value
    assert len(err.quoted) < MAX_QUOTED + 30 and "10,002 characters" in str(err)
    assert "x" * (MAX_QUOTED + 1) not in str(err)
    assert shorten("abc") == "'abc'"


def test_path_errors_are_os_errors_with_the_field() -> None:
    err = InvalidPath("out", "/tmp/f", "a folder; it is a file")
    assert isinstance(err, OSError) and isinstance(err, InvalidInput)
    assert not isinstance(err, ValueError)
    assert str(err) == "invalid out='/tmp/f': expected a folder; it is a file"
    assert err.field == "out" and err.errno is None


@pytest.mark.parametrize("err", [
    InvalidValue("seed", -1, "an integer >= 0"),
    InvalidValue("top_p", 2.0, reason="too large"),
    InvalidValue("rank", 0, "an integer", message="invalid lora rank=0: expected an integer"),
    InvalidPath("trace_path", "/x", reason="[Errno 2] No such file"),
])
def test_errors_survive_pickling_with_their_data(err: InvalidInput) -> None:
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err) and str(back) == str(err)
    assert (back.field, back.value, back.expected, back.reason) == (
        err.field, err.value, err.expected, err.reason)


# ---------------------------------------------------------------------- Int
@pytest.mark.parametrize("value", [True, False, np.bool_(True), 1.0, math.nan, math.inf, "1", None,
                                   Fraction(1, 1)])
def test_int_refuses_bools_floats_and_non_numbers(value) -> None:
    assert not Int(0).accepts(value)
    with pytest.raises(InvalidValue) as info:
        Int(0).check("count", value)
    assert info.value.field == "count" and info.value.value is value


def test_int_messages_and_normalisation() -> None:
    assert Int(1).expected == "an integer >= 1"
    assert Int(1, 16).expected == "an integer in [1, 16]"
    assert Int(1, text="an integer in [1, inf]").expected == "an integer in [1, inf]"
    value = Int(0).check("seed", np.int64(7))
    assert value == 7 and type(value) is int
    with pytest.raises(ValueError, match=r"^invalid pool=17: expected an integer in \[1, 16\]$"):
        Int(1, 16).check("pool", 17)


def test_int_numpy_and_bools_switches() -> None:
    assert Int(0).accepts(np.int32(3)) and not Int(0, numpy=False).accepts(np.int32(3))
    assert Int(0, bools=True).accepts(True) and Int(1, numpy=False, bools=True).accepts(True)
    assert not Int(0, numpy=False, bools=True).accepts(np.bool_(True))
    assert not Int(2, bools=True).accepts(True)  # True is 1, below the range


@given(st.integers(), st.integers(-50, 50), st.one_of(st.none(), st.integers(-50, 50)))
def test_int_accepts_exactly_the_range(value: int, low: int, high: int | None) -> None:
    inside = low <= value and (high is None or value <= high)
    checker = Int(low, high)
    assert checker.accepts(value) == inside
    if abs(value) < 2**63:
        assert checker.accepts(np.int64(value)) == inside
    if not inside:
        with pytest.raises(InvalidValue) as info:
            checker.check("n", value)
        assert info.value.expected == checker.expected


# ---------------------------------------------------------------------- Real
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, np.float32("nan"),
                                   np.float64("inf"), 10**400, True, np.bool_(False), "1.0", None])
def test_real_refuses_non_finite_huge_bool_and_non_numbers(value) -> None:
    checker = Real(None, None)  # every finite number
    assert not checker.accepts(value)
    with pytest.raises(InvalidValue) as info:
        checker.check("rate", value)
    assert info.value.field == "rate"


def test_real_bounds_and_messages() -> None:
    positive = Real(0, open_low=True)
    assert positive.expected == "a finite number > 0"
    assert not positive.accepts(0) and positive.accepts(1e-300)
    assert Real(0, 1, open_high=True).expected == "a number in [0, 1)"
    assert Real(0.0, 0.5, open_low=True).expected == "a number in (0, 0.5]"
    assert not Real(0, 1, open_high=True).accepts(1) and Real(0, 1).accepts(1)
    assert Real(0, numpy=False).accepts(np.float64(0.5))  # a float subclass
    assert not Real(0, numpy=False).accepts(np.float32(0.5))
    assert Real(0).accepts(np.float32(0.5)) and Real(0).accepts(Fraction(1, 2))
    assert Real(0, bools=True).accepts(True)
    value = Real(0).check("alpha", 16)
    assert value == 16.0 and type(value) is float
    with pytest.raises(ValueError, match=r"^invalid alpha=nan: expected a finite number >= 0$"):
        Real(0).check("alpha", math.nan)


@given(st.floats(allow_nan=True, allow_infinity=True), st.floats(-10, 10), st.floats(-10, 10),
       st.booleans(), st.booleans())
def test_real_accepts_exactly_the_finite_range(value: float, a: float, b: float,
                                               open_low: bool, open_high: bool) -> None:
    low, high = min(a, b), max(a, b)
    checker = Real(low, high, open_low, open_high)
    inside = (math.isfinite(value) and (value > low if open_low else value >= low)
              and (value < high if open_high else value <= high))
    assert checker.accepts(value) == inside
    assert checker.accepts(np.float64(value)) == inside


# ---------------------------------------------------------------------- Flag, OneOf, Custom
def test_flag() -> None:
    assert Flag().accepts(np.bool_(False)) and not Flag(numpy=False).accepts(np.bool_(False))
    for value in (0, 1, "no", None):
        with pytest.raises(ValueError, match="expected True or False"):
            Flag().check("enabled", value)
    assert Flag().check("enabled", np.bool_(True)) is True


def test_one_of() -> None:
    checker = OneOf(("open", "closed"))
    assert checker.check("loop", "open") == "open"
    with pytest.raises(ValueError,
                       match=r"^invalid loop='half': expected one of \('open', 'closed'\)$"):
        checker.check("loop", "half")
    assert not checker.accepts(["open"]) and not checker.accepts(None)
    assert OneOf(("a", "b"), "one of a, b").expected == "one of a, b"


def test_custom_turns_the_validators_words_into_the_expected_part() -> None:
    def positive_even(value):
        if not isinstance(value, int) or value <= 0 or value % 2:
            raise ValueError("a positive even integer")
        return value // 2

    checker = Custom(positive_even)
    assert checker.check("pairs", 8) == 4 and checker.accepts(2) and not checker.accepts(3)
    with pytest.raises(InvalidValue) as info:
        checker.check("pairs", 3)
    assert str(info.value) == "invalid pairs=3: expected a positive even integer"
    assert info.value.__cause__ is None and info.value.__suppress_context__


# ---------------------------------------------------------------------- check_fields
def test_check_fields_checks_in_order_and_normalises_frozen_dataclasses() -> None:
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Settings:
        steps: object = 1
        rate: object = 1

    settings = Settings(np.int64(3), 2)
    check_fields(settings, {"steps": Int(1), "rate": Real(0)})
    assert type(settings.steps) is int and type(settings.rate) is float
    kept = Settings(np.int64(3), 2)
    check_fields(kept, {"steps": Int(1), "rate": Real(0)}, normalise=False)
    assert type(kept.steps) is np.int64 and type(kept.rate) is int
    with pytest.raises(InvalidValue) as info:  # the first bad field, in the order given
        check_fields(Settings(0, -1), {"steps": Int(1), "rate": Real(0)})
    assert info.value.field == "steps"


# ---------------------------------------------------------------------- the configs use it
@pytest.mark.parametrize(("module", "name", "kwargs", "field"), [
    ("sandbox_rl.envs.config", "PlatformConfig", {"feed_size": 0}, "feed_size"),
    ("sandbox_rl.core.config", "SelfEvolvingConfig", {"lora_alpha": math.nan}, "lora_alpha"),
    ("sandbox_rl.core.run", "EvolveRunConfig", {"pool_size": 0}, "pool_size"),
    ("sandbox_rl.training.ppo", "PPOSettings", {"mini_batch_size": 3}, "mini_batch_size"),
    ("sandbox_rl.training.protocol", "ProtocolConfig", {"loop": "half"}, "loop"),
    ("sandbox_rl.training.sb3", "SB3Config", {"vec_env": "x"}, "vec_env"),
    ("sandbox_rl.training.llm_ppo", "LLMPPOConfig", {"users": 49}, "users"),
    ("sandbox_rl.training.agents_trainer", "AgentsConfig", {"draws": 0}, "draws"),
    ("sandbox_rl.training.rllib", "RLlibConfig", {"num_epochs": 0}, "num_epochs"),
    ("sandbox_rl.training.shared_policy", "SharedPolicyConfig", {"seed": -1}, "seed"),
    ("sandbox_rl.training.expert_iteration", "RoundSettings", {"margin": math.inf}, "margin"),
    ("sandbox_rl.agents.generation", "SamplingSettings", {"top_p": 0}, "top_p"),
    ("sandbox_rl.agents.kv_cache", "KVCacheSettings", {"nbits": 3}, "nbits"),
    ("sandbox_rl.agents.lora", "LoraSettings", {"rank": 0}, "rank"),
    ("sandbox_rl.agents.models", "ModelSettings", {"dtype": "int8"}, "dtype"),
])
def test_configs_raise_the_field_as_data(module: str, name: str, kwargs: dict,
                                         field: str) -> None:
    config = getattr(importlib.import_module(module), name)
    with pytest.raises(InvalidValue) as info:
        config(**kwargs)
    assert info.value.field == field and info.value.value is kwargs[field]


def test_state_checks_keep_their_wording_and_name_the_state_field() -> None:
    from sandbox_rl.envs.state import check_float, check_int

    assert check_int(3, "platform.step", 0) == 3
    with pytest.raises(ValueError) as info:
        check_int(True, "platform.hour", 0, 24)
    assert str(info.value) == "state field 'platform.hour' is True, expected an int in [0, 24)"
    assert info.value.field == "platform.hour"
    with pytest.raises(ValueError, match=r"expected an int in \[0, 24\)"):
        check_int(24, "platform.hour", 0, 24)
    with pytest.raises(ValueError, match=r"is nan, expected a number in \[0.0, 1.0\]"):
        check_float(math.nan, "task.last_reward", 0.0, 1.0)
    assert check_float(1, "task.last_reward", 0.0, 1.0) == 1.0


def test_refused_files_name_their_argument_as_data(tmp_path) -> None:
    from sandbox_rl.core.pool import trained_adapter_folders
    from sandbox_rl.envs import oasis_v0

    afile = tmp_path / "notes.txt"
    afile.write_text("keep me\n")
    env = oasis_v0.parallel_env(num_users=50, max_cycles=1, trace_path=str(afile / "t.db"))
    with pytest.raises(OSError) as info:  # the file system's refusal, named as the argument
        env.reset(seed=0)
    assert isinstance(info.value, InvalidPath) and info.value.field == "trace_path"
    assert info.value.value == str(afile / "t.db")
    assert str(info.value).startswith(f"invalid trace_path={shorten(str(afile / 't.db'))}: ")
    env.close()
    with pytest.raises(InvalidValue) as info:
        trained_adapter_folders(str(tmp_path), ["trend_prediction"])
    assert info.value.field == "adapters_dir" and "trend_prediction" in info.value.reason
