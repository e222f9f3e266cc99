"""Command lines from config dataclasses, the TRL way (HfArgumentParser: help from field metadata)."""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


def parse_config(config_class: type[T], argv: list[str] | None, description: str) -> T:
    """Parse `argv` into `config_class`; a failed cross-field check exits as a usage error (code 2)."""
    from transformers import HfArgumentParser

    parser = HfArgumentParser(config_class, description=description)
    try:
        (config,) = parser.parse_args_into_dataclasses(args=argv)
    except ValueError as e:
        parser.error(str(e))
    return config
