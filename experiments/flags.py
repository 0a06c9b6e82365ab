"""Command-line flags generated from `Config`, and an absl runner whose errors are one line."""

import dataclasses
import logging
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from absl import app, flags

from experiments import io
from experiments.config import Config, ConfigError, parse_learning_rates
from experiments.rules import ascii_number_parsers, int_list, split_list

FLAGS = flags.FLAGS
# Flags defined through this module's helpers (`define_config_flags`) belong to the module that calls them, so
# each entry point's `--help` lists them (absl's `--help` shows the main module's own flags only).
flags.disclaim_key_flags()

# `--help` lists an entry point's flags in these groups (Config's fields and the flags several tools share;
# the tool's own groups come first, and one named here too is joined); a flag in no group is listed last.
GROUPS: dict[str, tuple[str, ...]] = {
    "cell and task": ("cell", "cells", "cell_options", "hidden_size", "num_layers", "task", "task_options", "seq_len"),
    "training": ("steps", "batch_size", "optimizer", "learning_rate", "momentum", "clip_norm", "lr_multipliers"),
    "seeds and evaluation": ("seed", "num_seeds", "eval_every", "eval_size"),
    "outputs": ("workdir", "checkpoint_every", "diag_every", "tensorboard"),
    "execution": (
        "sequence_path",
        "unroll",
        "remat",
        "num_devices",
        "seed_chunk",
        "matmul_precision",
        "compilation_cache",
    ),
}
_HELP_FLAGS = ("help", "helpshort")
_DEFINERS = {int: flags.DEFINE_integer, float: flags.DEFINE_float, str: flags.DEFINE_string, bool: flags.DEFINE_bool}


class _LearningRatesParser(flags.ArgumentParser):
    """`--learning_rate`: one number (a float) or a comma-separated list in increasing order (a tuple)."""

    syntactic_help = "a number, or a comma-separated list of numbers"

    def parse(self, argument: Any) -> float | tuple[float, ...]:
        if not isinstance(argument, str):  # the default, a Config value
            return argument
        try:
            return parse_learning_rates(argument)
        except ConfigError as e:  # absl words it `flag --learning_rate=...: <reason>`; `run` prints it in one line
            raise ValueError(e.reason) from None

    def flag_type(self) -> str:
        return "float list"


class _LearningRatesSerializer(flags.ArgumentSerializer):
    def serialize(self, value: Any) -> str:
        return ",".join(map(repr, value)) if isinstance(value, tuple) else repr(value)


def define_config_flags(defaults: Config | None = None, exclude: Iterable[str] = ()) -> None:
    """One flag per Config field (same name, type, default and help); `--learning_rate` takes a list too."""
    defaults = defaults or Config()
    for field in dataclasses.fields(Config):
        if field.name in exclude:
            continue
        value = getattr(defaults, field.name)
        if field.name == "learning_rate":
            flags.DEFINE(
                _LearningRatesParser(), field.name, value, field.metadata["help"], serializer=_LearningRatesSerializer()
            )
        else:
            _DEFINERS[type(value)](field.name, value, field.metadata["help"])


def config_from_flags(**overrides: Any) -> Config:
    """The Config the parsed flags describe (fields without a flag keep their defaults)."""
    values = {f.name: FLAGS[f.name].value for f in dataclasses.fields(Config) if f.name in FLAGS}
    return Config(**{**values, **overrides})


def _parse(argv: list[str]) -> list[str]:
    ascii_number_parsers(FLAGS)  # every entry point's integer and float flags read numbers by the one rule
    try:
        return FLAGS(argv)
    except flags.Error as e:
        _fail(_flag_error(e))


def _flag_error(e: Exception) -> str:
    """absl's parse errors, reworded to start with the flag: `--name=value: what is wrong`."""
    if isinstance(e, flags.UnrecognizedFlagError):
        tip = str(e).partition(". Did you mean: ")[2].rstrip(" ?")
        suggestion = f"; did you mean --{tip}?" if tip else ""
        return f"--{e.flagname}: unknown flag{suggestion} (see --helpfull)"
    message = str(e)
    if isinstance(e, flags.CantOpenFlagFileError):
        return f"--flagfile: {message.removeprefix('ERROR:: ')}"
    if match := re.fullmatch(r"Missing value for flag (--\S+)", message):
        return f"{match[1]}: missing value"
    return message.removeprefix("flag ")


def _fail(message: str, code: int = 2) -> None:
    print(f"error: {' '.join(message.split())}", file=sys.stderr)  # one line, however the message was wrapped
    sys.exit(code)


def help_text(groups: Mapping[str, Sequence[str]] = {}, module: str | None = None) -> str:  # noqa: B006 - read only
    """`--help`: the head of the main module's docstring (up to its first example), then the entry point's
    own flags (`module`'s key flags; default the main module's) under `groups`, then GROUPS."""
    doc = (sys.modules["__main__"].__doc__ or "").strip("\n")
    paragraphs = doc.split("\n\n")
    examples = [i for i, p in enumerate(paragraphs) if all(line.startswith("    ") for line in p.splitlines())]
    head = "\n\n".join(paragraphs[: examples[0] + 1] if examples else paragraphs[:1])
    merged: dict[str, list[str]] = {}
    for name, members in [*groups.items(), *GROUPS.items()]:
        merged.setdefault(name, []).extend(members)
    own = {f.name: f for f in FLAGS.get_key_flags_for_module(module or sys.argv[0]) if f.name not in _HELP_FLAGS}
    lines = [head, ""]
    listed: set[str] = set()
    for title, names in [*merged.items(), ("other", sorted(own))]:
        present = [n for n in names if n in own and n not in listed]
        if present:
            lines.append(f"{title}:")
            lines += [_flag_line(own[n]) for n in present]
            lines.append("")
            listed.update(present)
    lines.append("All flags, absl's included: --helpfull.")
    return "\n".join(lines)


def _flag_line(flag: flags.Flag) -> str:
    name = f"--[no]{flag.name}" if flag.boolean else f"--{flag.name}"
    default = "" if flag.default is None else f" (default: {flag.default_as_str})"
    if flag.default is not None and not isinstance(flag.default, str):
        default = default.replace("'", "")  # absl quotes every default: 128, not '128'

    return flags.text_wrap(f"{name}: {flag.help}{default}", length=110, indent="      ", firstline_indent="  ")


class _HelpFlag(flags.BooleanFlag):
    """`--help` (and `-?`, `--helpshort`): `help_text`, on stdout, then exit 0."""

    def __init__(self, name: str, short_name: str | None, groups: Mapping[str, Sequence[str]]):
        super().__init__(name, False, "show this tool's flags, grouped", short_name=short_name, allow_hide_cpp=True)
        self._groups = groups

    def parse(self, argument: Any) -> None:
        if self._parse(argument):
            print(help_text(self._groups))
            sys.exit(0)


def _define_help_flags(groups: Mapping[str, Sequence[str]]) -> None:
    """absl's help flags, with `--help`/`-?`/`--helpshort` replaced by `_HelpFlag` (`--helpfull` stays absl's)."""
    app.define_help_flags()
    for name in ("help", "?", "helpshort"):
        if name in FLAGS and not isinstance(FLAGS[name], _HelpFlag):
            delattr(FLAGS, name)
    if "help" not in FLAGS:
        flags.DEFINE_flag(_HelpFlag("help", "?", groups))
        flags.DEFINE_flag(_HelpFlag("helpshort", None, groups))


def run(
    main: Callable[[list[str]], Any], positional: str | None = None, groups: Mapping[str, Sequence[str]] = {}
) -> None:  # noqa: B006 - read only
    """`absl.app.run(main)`, but a bad flag or ConfigError prints one line and exits 2.

    The one path every entry point parses its flags through: absl's parse errors, stray
    positional arguments (unless `positional` names what they are) and any ConfigError raised
    by `main` become `error: --flag...: ...` on stderr, exit code 2. `main`'s return value is
    the exit code (None = 0). A full disk (or quota) is one line too, exit code 1. `--help` lists
    the entry point's own flags under `groups` (name -> flag names) and CONFIG_GROUPS.
    Every entry point gets `--compilation_cache` (JAX's persistent compilation cache, on by default:
    `experiments.compile_cache`).
    """
    if "compilation_cache" not in FLAGS:
        flags.DEFINE_string(
            "compilation_cache",
            None,
            "Folder of JAX's persistent compilation cache, or off (default: $RNNLAB_COMPILATION_CACHE, else "
            "$XDG_CACHE_HOME/rnnlab/jax or ~/.cache/rnnlab/jax): a program compiled by an earlier run is read back.",
            module_name=sys.argv[0],  # the entry point's own flag: its --help lists it
        )

    def guarded(argv: list[str]) -> Any:
        if len(argv) > 1 and positional is None:
            _fail(f"unexpected positional arguments {argv[1:]}; every option is a --flag (see --helpfull)")
        try:
            from experiments import compile_cache

            compile_cache.enable(FLAGS.compilation_cache)
            return main(argv)
        except ConfigError as e:
            _fail(str(e))
        except Exception as e:
            if not io.disk_full(e):
                raise
            where = f" under {e.filename}" if isinstance(e, OSError) and e.filename else ""
            # orbax's background writes failed the same way; asyncio would report each ("Task exception was
            # never retrieved", with its traceback) when collected at exit: this line already says it
            logging.getLogger("asyncio").setLevel(logging.CRITICAL)
            _fail(
                f"no space left on device{where}; what was written before is intact: free some space and rerun "
                "the same command (a training run resumes from its last checkpoint)",
                code=1,
            )

    logging.getLogger("jax").setLevel(logging.WARNING)  # no "Unable to initialize backend 'tpu'"
    _define_help_flags(groups)
    app.run(guarded, flags_parser=_parse)


def list_flag(value: str, name: str) -> list[str]:
    """Split a comma-separated flag value; empty or repeated entries are an error (`rules.split_list`)."""
    return split_list(value, name)


def int_list_flag(value: str, name: str, low: int = 1, high: int = 10**9) -> list[int]:
    """A comma-separated list of distinct integers in [low, high], written by the one rule (`rules.int_list`:
    ASCII digits only, `²` is not 2; `1,01` repeats 1)."""
    return int_list(value, name, low, high)
