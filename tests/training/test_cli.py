"""The config command line: HfArgumentParser's conventions without importing torch into the run's parent."""

import subprocess
import sys
from dataclasses import dataclass, field

import pytest

from training.cli import parse_config


@dataclass
class Example:
    name: str = field(default="a", metadata={"help": "a name"})
    steps: int = field(default=3, metadata={"help": "a count"})
    rate: float = field(default=0.5, metadata={"help": "a rate"})
    on: bool = field(default=False, metadata={"help": "off by default"})
    lora: bool = field(default=True, metadata={"help": "on by default"})
    out: str | None = field(default=None, metadata={"help": "optional"})
    items: list[str] = field(default_factory=list, metadata={"help": "a list"})
    kind: str = field(default="x", metadata={"help": "one of two", "choices": ["x", "y"]})

    def __post_init__(self):
        if self.steps < 0:
            raise ValueError("--steps must be 0 or more")


PARSED = [  # name, argv, expected fields
    ("defaults", [], dict(name="a", steps=3, rate=0.5, on=False, lora=True, out=None, items=[])),
    ("typed-values", ["--name", "b", "--steps", "7", "--rate", "1e-4", "--out", "x"],
     dict(name="b", steps=7, rate=1e-4, out="x")),
    ("bare-flag-is-true", ["--on"], dict(on=True)),
    ("flag-with-value", ["--on", "false", "--lora", "no"], dict(on=False, lora=False)),
    ("negated-flag", ["--no_lora"], dict(lora=False)),
    ("list", ["--items", "p", "q"], dict(items=["p", "q"])),
]


@pytest.mark.parametrize("argv, expected", [c[1:] for c in PARSED], ids=[c[0] for c in PARSED])
def test_flags_parse_like_hf_argument_parser(argv, expected):
    config = parse_config(Example, argv, "example")
    assert {k: getattr(config, k) for k in expected} == expected


REFUSED = [  # name, argv, what the message says
    ("not-a-number", ["--steps", "many"], "invalid int value: 'many'"),
    ("not-a-boolean", ["--on", "maybe"], "expected a boolean"),
    ("not-a-choice", ["--kind", "z"], "invalid choice: 'z'"),
    ("unknown-flag", ["--unknown", "1"], "unrecognized arguments: --unknown"),
    ("dataclass-check", ["--steps", "-1"], "--steps must be 0 or more"),  # the config's own check, as a usage error
]


@pytest.mark.parametrize("argv, message", [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_bad_flags_are_usage_errors_that_say_what_is_wrong(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        parse_config(Example, argv, "example")
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_help_shows_each_fields_help_and_default(capsys):
    with pytest.raises(SystemExit):
        parse_config(Example, ["--help"], "example")
    out = capsys.readouterr().out
    assert "a rate (default: 0.5)" in out and "--no_lora" in out


def test_the_runs_own_process_does_not_import_torch_to_read_its_command_line(tmp_path):
    # The run's process only orchestrates; its stages (child processes) hold the models. torch in it
    # cost ~290 MB counted against the run's 4 GB peak (docs/training.md).
    code = ("import sys; from training.run import resolve_config; "
            f"resolve_config(['--preset', 'standard', '--runs_dir', {str(tmp_path)!r}]); "
            "print(sorted(m for m in ('torch', 'transformers', 'trl') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
