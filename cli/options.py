"""Turn a pydantic config model into argparse flags, and flags + a YAML file back into the model.

One schema, two front ends: `--instances-per-task 64` on the command line is `instances_per_task: 64` in YAML.
Flags given on the command line override the YAML file; unknown YAML keys are errors.
"""

from __future__ import annotations

import argparse
import types
import typing
from pathlib import Path

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from specialist.config import load_yaml_config, validate_config
from specialist.errors import SpecialistError, UsageError


def add_model_flags(
    parser: argparse.ArgumentParser,
    model: type[BaseModel],
    required: tuple[str, ...] = (),
    exclude: tuple[str, ...] = (),
    config_file: bool = True,
) -> None:
    """One flag per field (an argument for a POSITIONAL field); a model composed of several config models gets one
    help group per part. `config_file` adds `--config YAML`, the same options from a file."""
    parts = [
        b
        for b in reversed(model.__mro__)
        if b is not model
        and issubclass(b, BaseModel)
        and b.__dict__.get("__doc__")
        and b.model_fields
        and b is not BaseModel
    ]
    if not parts:
        parts = [model]
    seen: set[str] = set(exclude)
    for part in parts:
        fields = {n: f for n, f in model.model_fields.items() if n in part.model_fields and n not in seen}
        seen.update(fields)
        if fields:
            title = (part.__doc__ or "").strip().splitlines()[0].rstrip(".").lower() if part.__doc__ else None
            _add_fields(parser.add_argument_group(title) if title else parser, fields, required)
    own = {n: f for n, f in model.model_fields.items() if n not in seen}  # fields the model itself adds to its parts
    if own:
        _add_fields(parser, own, required)
    if config_file:
        parser.add_argument(
            "--config", type=Path, metavar="YAML", help="read options from a YAML file; flags override it"
        )


POSITIONAL = {"positional": True}  # Field(json_schema_extra=POSITIONAL): an argument, not a --flag


def _add_fields(parser, fields: dict, required: tuple[str, ...]) -> None:
    for name, field in fields.items():
        if (field.json_schema_extra or {}).get("positional"):
            parser.add_argument(name, metavar=name.upper(), help=field.description or "")
            continue
        flag = "--" + name.replace("_", "-")
        help_text = field.description or ""
        if field.default is not PydanticUndefined and field.default is not None:
            help_text += f" (default: {field.default})"
        elif field.default_factory is not None and field.default_factory():
            help_text += f" (default: {_show(field.default_factory())})"
        elif name in required:
            help_text += " (required)"
        kwargs: dict = {"dest": name, "default": argparse.SUPPRESS, "help": help_text}
        annotation = field.annotation
        if annotation is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        elif typing.get_origin(annotation) is list:
            parser.add_argument(flag, action="append", metavar=name.upper(), **kwargs)
        else:
            parser.add_argument(flag, metavar=_metavar(annotation), **kwargs)


def model_from_args(
    model: type[BaseModel], args: argparse.Namespace, source: str = "options", config_file: bool = True
):
    """The model from the flags (over the `--config` YAML when `config_file`: the YAML holds only this model).
    Anything wrong with them is a `UsageError` (exit 2)."""
    try:
        values = load_yaml_config(args.config) if config_file and getattr(args, "config", None) else {}
        flags = {k: v for k, v in vars(args).items() if k in model.model_fields}
        # A flag replaces the YAML's value of the same idea: --max-steps replaces a YAML `epochs`.
        for group in getattr(model, "exclusive_options", ()):
            if set(group) & set(flags):
                for name in group:
                    values.pop(name, None)
        values.update(flags)
        return validate_config(model, values, source)
    except SpecialistError as e:
        raise UsageError(e.problem, e.fix) from None


def _show(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def _metavar(annotation) -> str:
    union = isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union
    args = [a for a in typing.get_args(annotation) if a is not type(None)] if union else [annotation]
    names = {int: "N", float: "X", Path: "PATH", str: "TEXT"}
    return "|".join(
        names.get(a, "VALUE") if typing.get_origin(a) is not typing.Literal else "|".join(typing.get_args(a))
        for a in args
    )


def count(low: int, high: int | None = None):
    """argparse type: an integer in [low, high]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{value} is out of range {low}..{high if high is not None else ''}")
        return value

    return parse
