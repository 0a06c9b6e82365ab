"""Command-line flags generated from `Config`, and an absl runner whose errors are one line."""

import dataclasses
import logging
import sys
from collections.abc import Callable, Iterable
from typing import Any

from absl import app, flags

from experiments.config import Config, ConfigError

FLAGS = flags.FLAGS
_DEFINERS = {int: flags.DEFINE_integer, float: flags.DEFINE_float, str: flags.DEFINE_string, bool: flags.DEFINE_bool}


def define_config_flags(defaults: Config | None = None, exclude: Iterable[str] = ()) -> None:
    """One flag per Config field (same name, type, default and help)."""
    defaults = defaults or Config()
    for field in dataclasses.fields(Config):
        if field.name not in exclude:
            value = getattr(defaults, field.name)
            _DEFINERS[type(value)](field.name, value, field.metadata["help"])


def config_from_flags(**overrides: Any) -> Config:
    """The Config the parsed flags describe (fields without a flag keep their defaults)."""
    values = {f.name: FLAGS[f.name].value for f in dataclasses.fields(Config) if f.name in FLAGS}
    return Config(**{**values, **overrides})


def _parse(argv: list[str]) -> list[str]:
    try:
        return FLAGS(argv)
    except flags.Error as e:
        _fail(str(e))


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def run(main: Callable[[list[str]], Any]) -> None:
    """`absl.app.run(main)`, but a bad flag or ConfigError prints one line and exits 2."""

    def guarded(argv: list[str]) -> Any:
        if len(argv) > 1:
            _fail(f"unexpected positional arguments {argv[1:]}; every option is a --flag (see --helpfull)")
        try:
            return main(argv)
        except ConfigError as e:
            _fail(str(e))

    logging.getLogger("jax").setLevel(logging.WARNING)  # no "Unable to initialize backend 'tpu'"
    app.run(guarded, flags_parser=_parse)


def list_flag(value: str, name: str) -> list[str]:
    """Split a comma-separated flag value; empty entries are an error."""
    items = [s.strip() for s in value.split(",")]
    if not value.strip() or not all(items):
        raise ConfigError(f"--{name}={value!r}: must be a comma-separated list with no empty entries")
    return items
