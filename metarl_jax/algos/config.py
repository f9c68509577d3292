"""Frozen, validated algorithm configs.

Each algorithm's ``Config`` is a frozen dataclass whose defaults are its paper's
values. Fields carry their allowed range in metadata, so that a bad value fails
at construction -- before anything is compiled -- with a ``ValueError`` that
names the field and what it accepts:

    meta_batch_size: int = positive(40)
    fast_lr: float = in_range(0.1, 0.0, None)
    outer_optimizer: str = one_of("trpo", ("trpo", "ppo"))
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

ConfigT = TypeVar("ConfigT", bound="AlgoConfig")


def in_range(default: Any, low: float | None, high: float | None, *, low_inclusive: bool = True,
             high_inclusive: bool = True) -> Any:
    return dataclasses.field(default=default, metadata={
        "range": (low, high, low_inclusive, high_inclusive)})


def positive(default: Any) -> Any:
    return in_range(default, 0, None, low_inclusive=False)


def non_negative(default: Any) -> Any:
    return in_range(default, 0, None)


def unit_interval(default: Any) -> Any:
    return in_range(default, 0.0, 1.0)


def one_of(default: Any, choices: Iterable[Any]) -> Any:
    return dataclasses.field(default=default, metadata={"choices": tuple(choices)})


def _describe_range(low, high, low_inc, high_inc) -> str:
    left = "[" if low_inc else "("
    right = "]" if high_inc else ")"
    return f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"


def _base_type(hint: Any) -> tuple[Any, bool]:
    """Returns (type, optional) for hints like int, float, tuple[int, ...], int | None."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return _base_type(args[0])[0], True
    return hint, False


def _check_type(name: str, value: Any, hint: Any) -> Any:
    """Checks (and lightly coerces: int -> float, list -> tuple) ``value`` against ``hint``."""
    base, optional = _base_type(hint)
    if value is None:
        if optional:
            return None
        raise ValueError(f"config field {name!r} must not be None")
    if base is bool:
        if not isinstance(value, bool):
            raise ValueError(f"config field {name!r} must be a bool (true/false), got {value!r}")
        return value
    if base is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"config field {name!r} must be an int, got {value!r}")
        return value
    if base is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"config field {name!r} must be a float, got {value!r}")
        return float(value)
    if base is str:
        if not isinstance(value, str):
            raise ValueError(f"config field {name!r} must be a string, got {value!r}")
        return value
    if typing.get_origin(base) is tuple:
        (item,) = {a for a in typing.get_args(base) if a is not Ellipsis}
        if not isinstance(value, (tuple, list)):
            raise ValueError(f"config field {name!r} must be a tuple of {item.__name__}, got {value!r}")
        return tuple(_check_type(f"{name}[{i}]", v, item) for i, v in enumerate(value))
    return value


@dataclasses.dataclass(frozen=True)
class AlgoConfig:
    """Base class: validates types and ranges of every field after construction."""

    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = _check_type(f.name, getattr(self, f.name), hints[f.name])
            object.__setattr__(self, f.name, value)
            if value is None:
                continue
            if "choices" in f.metadata and value not in f.metadata["choices"]:
                raise ValueError(
                    f"config field {f.name!r} must be one of {list(f.metadata['choices'])}, got {value!r}")
            if "range" in f.metadata:
                low, high, low_inc, high_inc = f.metadata["range"]
                values = value if isinstance(value, tuple) else (value,)
                for v in values:
                    bad = (not math.isfinite(v)
                           or (low is not None and (v < low or (v == low and not low_inc)))
                           or (high is not None and (v > high or (v == high and not high_inc))))
                    if bad:
                        raise ValueError(
                            f"config field {f.name!r} = {value!r} is out of range; allowed "
                            f"{_describe_range(low, high, low_inc, high_inc)}")
        self.validate()

    def validate(self) -> None:
        """Cross-field checks; subclasses override and raise ValueError naming the fields."""

    # -- (de)serialisation --------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls: type[ConfigT], values: Mapping[str, Any]) -> ConfigT:
        check_known_fields(cls, values)
        return cls(**values)

    def replace(self: ConfigT, **changes: Any) -> ConfigT:
        check_known_fields(type(self), changes)
        return dataclasses.replace(self, **changes)

    def with_overrides(self: ConfigT, overrides: Iterable[str]) -> ConfigT:
        """Applies ``key=value`` strings (launcher ``--override``), parsed by each field's type."""
        hints = typing.get_type_hints(type(self))
        changes: dict[str, Any] = {}
        for item in overrides:
            if "=" not in item:
                raise ValueError(f"override {item!r} must have the form key=value")
            key, raw = (s.strip() for s in item.split("=", 1))
            check_known_fields(type(self), {key: None})
            changes[key] = parse_value(key, raw, hints[key])
        return self.replace(**changes)

    def diff(self, other: AlgoConfig) -> list[str]:
        """Names of the fields whose values differ."""
        mine, theirs = self.to_dict(), other.to_dict()
        return sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def check_known_fields(cls: type, values: Mapping[str, Any]) -> None:
    unknown = sorted(set(values) - set(field_names(cls)))
    if unknown:
        raise ValueError(f"unknown config field(s) {unknown} for {cls.__module__}.{cls.__qualname__}; "
                         f"valid fields are {field_names(cls)}")


def parse_value(name: str, raw: str, hint: Any) -> Any:
    """Parses a command-line string into the field's type (errors name the field)."""
    base, optional = _base_type(hint)
    text = raw.strip()
    if optional and text.lower() in ("none", "null"):
        return None
    try:
        if base is bool:
            if text.lower() in ("true", "1", "yes"):
                return True
            if text.lower() in ("false", "0", "no"):
                return False
            raise ValueError
        if base is int:
            return int(text)
        if base is float:
            return float(text)
        if base is str:
            return text
        if typing.get_origin(base) is tuple:
            (item,) = {a for a in typing.get_args(base) if a is not Ellipsis}
            text = text.strip("()[] ")
            return tuple(parse_value(name, part, item) for part in text.split(",") if part.strip())
        return json.loads(text)
    except ValueError:
        type_name = getattr(base, "__name__", str(base))
        raise ValueError(f"config field {name!r} expects {type_name}, could not parse {raw!r}") from None


def get_preset(presets: Mapping[str, Any], name: str, algo: str):
    if name not in presets:
        raise ValueError(f"unknown preset {name!r} for algo {algo!r}; valid presets are {sorted(presets)}")
    return presets[name]
