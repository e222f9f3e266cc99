"""Command lines from config dataclasses, the TRL way: one flag per field, help from its metadata.

HfArgumentParser is where this style comes from, but importing it imports torch (about 290 MB
resident), and `python -m training.run`'s own process only orchestrates: its stages, each a child
process, hold the models, and the parent's torch counted against the run's 4 GB peak
(docs/training.md; `tests/training/test_cli.py` checks it stays out). So the parser here is
argparse over the same field metadata with HfArgumentParser's conventions: `--name value`,
`--flag` / `--flag false` for booleans, `--no_flag` for a boolean whose default is true, and
`--items a b c` for a list.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import TypeVar

T = TypeVar("T")
TRUE, FALSE = ("yes", "true", "t", "y", "1"), ("no", "false", "f", "n", "0")


def to_bool(text: str) -> bool:
    if text.lower() in TRUE:
        return True
    if text.lower() in FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (true/false, yes/no, 1/0), got {text!r}")


def _field_type(hint) -> tuple[type, bool]:
    """(element type, is a list): str | None -> (str, False), list[str] -> (str, True). The field types
    configs use are str, int, float and bool, optionally None, and lists of them."""
    is_list = typing.get_origin(hint) is list
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    kind = args[0] if args else hint
    if kind not in (str, int, float, bool):
        raise TypeError(f"config fields must be str, int, float or bool (optionally None) or lists of them, got {hint!r}")
    return kind, is_list


class ConfigParser(argparse.ArgumentParser):
    """An argparse parser with one option per field of `config_class`; a field's metadata holds the
    option's argparse settings (`help`, `choices`)."""

    def __init__(self, config_class: type, **kwargs):
        super().__init__(formatter_class=argparse.ArgumentDefaultsHelpFormatter, **kwargs)
        self.config_class = config_class
        hints = typing.get_type_hints(config_class)
        for f in dataclasses.fields(config_class):
            if not f.init:
                continue
            kind, is_list = _field_type(hints[f.name])
            options = dict(f.metadata)  # help, and any other argparse option (e.g. choices), as HfArgumentParser
            if is_list:
                default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
                self.add_argument(f"--{f.name}", type=kind, nargs="+", default=default, **options)
            elif kind is bool:
                self.add_argument(f"--{f.name}", type=to_bool, nargs="?", const=True, default=f.default, **options)
                if f.default is True:
                    self.add_argument(f"--no_{f.name}", dest=f.name, action="store_false", help=f"Turn off --{f.name}.")
            else:
                self.add_argument(f"--{f.name}", type=kind, default=f.default, **options)

    def parse_config(self, argv: list[str] | None):
        return self.config_class(**vars(self.parse_args(argv)))


def parse_config(config_class: type[T], argv: list[str] | None, description: str) -> T:
    """Parse `argv` into `config_class`; a failed cross-field check exits as a usage error (code 2)."""
    parser = ConfigParser(config_class, description=description)
    try:
        return parser.parse_config(argv)
    except ValueError as e:
        parser.error(str(e))
