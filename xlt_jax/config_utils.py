"""Config helpers: big_vision-style `get_config("key=value,...")` arguments, checked against defaults."""

from __future__ import annotations

import math
from typing import Any

import ml_collections

from xlt_jax.errors import ConfigError


def _coerce(key: str, raw: str, default: Any) -> Any:
    if isinstance(default, bool):
        if raw.lower() in ("1", "true", "yes", ""):
            return True
        if raw.lower() in ("0", "false", "no"):
            return False
        raise ConfigError(f"config argument {key!r}: expected a boolean, got {raw!r}")
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError as e:
            raise ConfigError(f"config argument {key!r}: expected an integer, got {raw!r}") from e
    if isinstance(default, float):
        try:
            value = float(raw)
        except ValueError as e:
            raise ConfigError(f"config argument {key!r}: expected a number, got {raw!r}") from e
        if not math.isfinite(value):  # 'nan', 'inf': no setting here means that
            raise ConfigError(f"config argument {key!r}: expected a finite number, got {raw!r}")
        return value
    return raw


def parse_arg(arg: str | None, **defaults: Any) -> ml_collections.ConfigDict:
    """Parse `"a=1,b=x,flag"` into a ConfigDict typed by `defaults`; unknown keys are an error.

    A bare `flag` means `flag=True` (booleans only: a bare `objective` is a forgotten value, not "true").
    Values are coerced to the type of their default; floats must be finite.
    """
    out = ml_collections.ConfigDict(defaults)
    if not arg:
        return out
    for item in arg.split(","):
        if not item:
            continue
        key, _, raw = item.partition("=")
        key = key.strip()
        if key not in defaults:
            raise ConfigError(
                f"unknown config argument {key!r}; known: {', '.join(sorted(defaults))}"
            )
        if "=" not in item and not isinstance(defaults[key], bool):
            raise ConfigError(f"config argument {key!r}: expected {key}=VALUE (only booleans may be given bare)")
        out[key] = _coerce(key, raw.strip() if "=" in item else "true", defaults[key])
    return out


def check_keys(config: ml_collections.ConfigDict, allowed: ml_collections.ConfigDict, prefix: str = "") -> None:
    """Raise `ConfigError` naming the first key of `config` that `allowed` does not define."""
    for key, value in config.items():
        name = f"{prefix}{key}"
        if key not in allowed:
            raise ConfigError(f"unknown config key {name!r}")
        if isinstance(value, ml_collections.ConfigDict) and isinstance(allowed[key], ml_collections.ConfigDict):
            check_keys(value, allowed[key], prefix=f"{name}.")
