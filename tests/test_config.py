"""Frozen, validated algorithm configs: ranges, types, overrides, (de)serialisation, presets."""

from __future__ import annotations

import dataclasses
import re

import pytest

from metarl_jax import algos
from metarl_jax.algos.maml import Config
from metarl_jax.algos.ppo import PPOConfig

CONFIG_CLASSES = [Config, PPOConfig]


@pytest.mark.parametrize("cls", CONFIG_CLASSES)
def test_defaults_validate(cls):
    config = cls()
    assert dataclasses.is_dataclass(config)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.discount = 0.5  # type: ignore[misc]


@pytest.mark.parametrize(
    "cls,field,value,allowed",
    [
        (Config, "meta_batch_size", 0, "(0, inf]"),
        (Config, "meta_batch_size", -3, "(0, inf]"),
        (Config, "discount", 1.5, "[0.0, 1.0]"),
        (Config, "discount", -0.1, "[0.0, 1.0]"),
        (Config, "discount", float("nan"), "[0.0, 1.0]"),
        (Config, "max_kl", -1.0, "(0, inf]"),
        (Config, "max_kl", 0.0, "(0, inf]"),
        (Config, "fast_lr", -0.1, "[0, inf]"),
        (Config, "backtrack_ratio", 1.0, "(0.0, 1.0)"),
        (Config, "init_log_std", 3.0, "[-5.0, 2.0]"),
        (Config, "hidden_sizes", (16, 0), "(0, inf]"),
        (Config, "eval_lr", 0.0, "(0, inf]"),
        (PPOConfig, "ppo_clip", 1.5, "(0.0, 1.0]"),
        (PPOConfig, "ppo_epochs", 0, "(0, inf]"),
        (PPOConfig, "discount", 1.5, "[0.0, 1.0]"),
        # PPOConfig redeclares gae_lambda with a new default; its range must still be enforced.
        (PPOConfig, "gae_lambda", 1.5, "[0.0, 1.0]"),
        (PPOConfig, "gae_lambda", -0.5, "[0.0, 1.0]"),
    ],
)
def test_out_of_range_raises_naming_field_and_range(cls, field, value, allowed):
    with pytest.raises(ValueError) as err:
        cls(**{field: value})
    message = str(err.value)
    assert repr(field) in message
    assert allowed in message


@pytest.mark.parametrize(
    "cls,field,value,choices",
    [
        (Config, "inner_estimator", "reinforce", ["vpg", "lvc", "dice"]),
        (Config, "optimizer", "sgd", ["trpo", "ppo", "vpg"]),
        (PPOConfig, "optimizer", "trpo", ["ppo"]),
        (PPOConfig, "activation", "sigmoid", ["relu", "tanh", "elu", "swish"]),
        (PPOConfig, "baseline", "value_network", ["linear", "none", "leave_one_out"]),
        (Config, "baseline", "mean", ["linear", "none", "leave_one_out"]),
        (Config, "outer_estimator", "dice", ["post_update", "pre_update_score"]),
        (Config, "score_baseline", "normalized", ["none", "leave_one_out"]),
    ],
)
def test_bad_choice_raises_listing_choices(cls, field, value, choices):
    with pytest.raises(ValueError) as err:
        cls(**{field: value})
    message = str(err.value)
    assert repr(field) in message and repr(value) in message
    for choice in choices:
        assert repr(choice) in message


@pytest.mark.parametrize("name", ["vpg", "trpo", "ppo", "maml", "metasgd", "emaml", "promp", "maesn", "latent_space"])
def test_every_policy_gradient_learner_has_the_baseline_field(name):
    cls = algos.config_class(name)
    assert cls().baseline == "linear"  # rllab's: the default, unchanged
    for baseline in ("none", "leave_one_out"):
        assert cls(baseline=baseline).baseline == baseline


def test_pre_update_score_needs_the_samples_held_fixed_inner_step_and_other_tasks():
    assert Config(inner_estimator="vpg", outer_estimator="pre_update_score").score_baseline == "leave_one_out"
    with pytest.raises(ValueError, match="'inner_estimator' = 'dice' must be 'vpg'"):
        Config(outer_estimator="pre_update_score")
    with pytest.raises(ValueError, match="'score_baseline' = 'leave_one_out' needs 'meta_batch_size' >= 2"):
        Config(inner_estimator="vpg", outer_estimator="pre_update_score", meta_batch_size=1)
    Config(inner_estimator="vpg", outer_estimator="pre_update_score", meta_batch_size=1, score_baseline="none")
    for name in ("emaml", "promp"):  # their outer objectives have their own score term / PPO epochs
        with pytest.raises(ValueError, match="'outer_estimator' = 'pre_update_score' must be 'post_update'"):
            algos.config_class(name)(inner_estimator="vpg", outer_estimator="pre_update_score")
    algos.config_class("metasgd")(inner_estimator="vpg", outer_estimator="pre_update_score")


@pytest.mark.parametrize(
    "field,value",
    [
        ("meta_batch_size", 2.5),
        ("meta_batch_size", True),
        ("meta_batch_size", "40"),
        ("first_order", "yes"),
        ("first_order", 1),
        ("fast_lr", "0.1"),
        ("hidden_sizes", 64),
        ("hidden_sizes", (64.5, 64)),
        ("inner_estimator", 3),
        ("discount", None),
    ],
)
def test_wrong_type_raises_naming_field(field, value):
    with pytest.raises(ValueError) as err:
        Config(**{field: value})
    assert field in str(err.value)


def test_light_coercions():
    config = Config(fast_lr=1, hidden_sizes=[8, 4], eval_lr=None)
    assert isinstance(config.fast_lr, float) and config.fast_lr == 1.0
    assert config.hidden_sizes == (8, 4)
    assert config.eval_lr is None


def _valid_fields_listed(message: str, cls) -> None:
    for name in (f.name for f in dataclasses.fields(cls)):
        assert repr(name) in message, name


def test_unknown_field_via_replace_lists_valid_fields():
    with pytest.raises(ValueError) as err:
        Config().replace(foo=1)
    assert "'foo'" in str(err.value)
    _valid_fields_listed(str(err.value), Config)


def test_unknown_field_via_overrides_lists_valid_fields():
    with pytest.raises(ValueError) as err:
        Config().with_overrides(["foo=1"])
    assert "'foo'" in str(err.value)
    _valid_fields_listed(str(err.value), Config)


def test_unknown_field_via_from_dict():
    values = Config().to_dict()
    values["foo"] = 1
    with pytest.raises(ValueError, match="foo"):
        Config.from_dict(values)


def test_replace_validates():
    assert Config().replace(meta_batch_size=3).meta_batch_size == 3
    with pytest.raises(ValueError, match="meta_batch_size"):
        Config().replace(meta_batch_size=0)


def test_overrides_parse_each_fields_type():
    base = Config()
    config = base.with_overrides(
        ["hidden_sizes=16,16", "first_order=true", "fast_lr=0.3", "eval_lr=none", " meta_batch_size = 7 ",
         "inner_estimator=lvc", "hidden_sizes=(32, 8)"]  # a later override of the same key wins
    )
    assert config.hidden_sizes == (32, 8)
    assert config.first_order is True
    assert config.fast_lr == 0.3 and isinstance(config.fast_lr, float)
    assert config.eval_lr is None
    assert config.meta_batch_size == 7 and isinstance(config.meta_batch_size, int)
    assert config.inner_estimator == "lvc"
    assert base.with_overrides(["hidden_sizes=16,16"]).hidden_sizes == (16, 16)
    assert base.with_overrides(["first_order=False"]).first_order is False
    assert base.with_overrides(["eval_lr=0.25"]).eval_lr == 0.25
    assert base.with_overrides([]) == base


@pytest.mark.parametrize(
    "override,pattern",
    [
        ("x", "key=value"),
        ("meta_batch_size", "key=value"),
        ("meta_batch_size=abc", "meta_batch_size"),
        ("meta_batch_size=2.5", "meta_batch_size"),
        ("first_order=maybe", "first_order"),
        ("fast_lr=fast", "fast_lr"),
        ("discount=none", "discount"),  # not optional
        ("discount=2", re.escape("[0.0, 1.0]")),  # parsed, then range-checked
    ],
)
def test_malformed_overrides_raise(override, pattern):
    with pytest.raises(ValueError, match=pattern):
        Config().with_overrides([override])


@pytest.mark.parametrize("cls", CONFIG_CLASSES)
def test_to_dict_from_dict_round_trip(cls):
    config = cls().replace(hidden_sizes=(7, 5), discount=0.9)
    data = config.to_dict()
    assert data["hidden_sizes"] == [7, 5]  # JSON-friendly
    assert set(data) == {f.name for f in dataclasses.fields(cls)}
    restored = cls.from_dict(data)
    assert restored == config
    assert restored.diff(config) == []


def test_diff_names_differing_fields():
    a = Config()
    b = a.replace(fast_lr=0.5, hidden_sizes=(8,), first_order=True)
    assert a.diff(b) == ["fast_lr", "first_order", "hidden_sizes"]
    assert b.diff(a) == ["fast_lr", "first_order", "hidden_sizes"]
    assert a.diff(a) == []


@pytest.mark.parametrize("name", algos.names())
def test_every_preset_is_a_valid_config_of_its_algo(name):
    cls = algos.config_class(name)
    presets = algos.presets(name)
    assert "smoke" in presets and presets
    for preset_name, config in presets.items():
        assert isinstance(config, cls), (name, preset_name, type(config))
        # Re-validating the preset's values from scratch succeeds and gives the same config.
        assert cls.from_dict(config.to_dict()) == config
        assert algos.preset(name, preset_name) == config


def test_unknown_preset_and_algo_raise_listing_valid_ones():
    with pytest.raises(ValueError) as err:
        algos.preset("maml", "nope")
    for preset_name in algos.presets("maml"):
        assert repr(preset_name) in str(err.value)
    with pytest.raises(ValueError) as err:
        algos.presets("nope")
    for name in algos.names():
        assert repr(name) in str(err.value)


@pytest.mark.parametrize("family", ["wheeled", "ant_goal", "block_push"])
def test_maesn_families_share_maesns_meta_test_protocol(family):
    """Every method's preset on MAESN's families meta-tests like MAESN (Fig. 6 compares like with like)."""
    fields = ("eval_num_tasks", "eval_episodes_per_task", "eval_adaptation_steps", "eval_reward", "eval_schedule",
              "meta_batch_size", "episodes_per_task")
    reference = algos.preset("maesn", family)
    for name in ("maml", "metasgd", "emaml", "promp", "latent_space"):
        config = algos.preset(name, family)
        assert {f: getattr(config, f) for f in fields} == {f: getattr(reference, f) for f in fields}, name
