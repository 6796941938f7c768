"""Typed models become the flags: every field a flag, and the flags back into the model."""

import argparse
from pathlib import Path
from typing import Literal

import pytest
from pydantic import Field

from cli.options import add_model_flags, model_from_args
from specialist.config import StrictModel
from specialist.errors import SpecialistError


class Part(StrictModel):
    """A part."""

    data: Path | None = Field(None, description="where")


class Whole(Part):
    mode: Literal["a", "b"] | None = Field(None, description="how")
    count: int = Field(3, ge=1, description="how many")


def _parse(*argv):
    parser = argparse.ArgumentParser()
    add_model_flags(parser, Whole, config_file=False)
    return parser, model_from_args(Whole, parser.parse_args(list(argv)))


def test_a_models_own_fields_are_flags_beside_its_parts():
    parser, options = _parse("--data", "x", "--mode", "b", "--count", "5")
    assert options == Whole(data=Path("x"), mode="b", count=5)
    assert "--mode a|b" in parser.format_help()  # an optional Literal shows its choices


def test_a_bad_value_is_one_line_naming_the_field():
    with pytest.raises(SpecialistError, match=r"count: Input should be greater than or equal to 1"):
        _parse("--count", "0")
    with pytest.raises(SpecialistError, match=r"mode: Input should be 'a' or 'b'"):
        _parse("--mode", "c")


def test_every_subcommand_is_generated_from_a_model():
    """No hand-written flags: each flag of each command is a field of the model its handler validates."""
    from cli.main import build_parser

    def leaves(parser, path=()):
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or parser.get_default("handler"):
            yield path, parser
        for sub in subs:
            for name, child in sub.choices.items():
                yield from leaves(child, (*path, name))

    found = 0
    for path, parser in leaves(build_parser()):
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)) or action.dest == "config":
                continue
            # A generated flag is named after its field; a hand-written one would be free to differ.
            assert action.dest.replace("_", "-") in ("".join(action.option_strings) or action.dest.replace("_", "-"))
            if action.option_strings:  # a flag, not a POSITIONAL field
                assert action.default is argparse.SUPPRESS, (path, action.dest)  # as add_model_flags sets it
            found += 1
    assert found > 80
