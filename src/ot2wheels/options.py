"""The build run's options, declared once: nox's argument parser and invoke's task help are
made from `RunOptions`, so a new option (or a changed help text) shows up in both.

    nox -s build -- --target bookworm-armhf --jobs 2 --no-ccache   (argparse, from `argparser`)
    invoke build --recipe regex --smoke --docker                    (help dict, from `invoke_help`)
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NOX = "nox"
INVOKE = "invoke"


@dataclass(frozen=True)
class Flag:
    """How a field of `RunOptions` appears on the command lines."""

    help: str
    frontends: frozenset[str] = frozenset({NOX, INVOKE})
    short: str | None = None  # an extra one-letter spelling (nox only: invoke derives its own)


def flag(help: str, *, only: str | None = None, short: str | None = None) -> dict[str, Flag]:
    """Field metadata: the option's help text, and which front end has it (default: both)."""
    return {"flag": Flag(help, frozenset({only}) if only else frozenset({NOX, INVOKE}), short)}


@dataclass(frozen=True)
class RunOptions:
    """What a build run does besides which recipes: `pipeline.run` takes these.

    A field with `flag(...)` metadata is a command-line option named after the field (`_` -> `-`);
    a boolean that defaults to True is switched off with `--no-NAME`. Fields without it are set
    by the session or task itself (test-arm smoke-tests without building)."""

    target: tuple[str, ...] = field(default=(), metadata=flag(
        "target name (repeatable; default: the default targets of toolchain/targets.toml)"))
    force: bool = field(default=False, metadata=flag("rebuild even when a cached build matches"))
    jobs: int | None = field(default=None, metadata=flag(
        "builds run at once (default: core count); compile jobs are split among them", short="-j"))
    ccache: bool = field(default=True, metadata=flag("wrap the compilers in ccache (default; --no-ccache: do not)"))
    ledger: Path | None = field(default=None, metadata=flag(
        "SQLite build ledger (default: $OT2WHEELS_LEDGER or dist/ledger.sqlite)"))
    smoke: bool = field(default=False, metadata=flag("also smoke-test each built wheel under qemu-user"))
    docker: bool = field(default=False, metadata=flag(
        "run the build inside the builder image (invoke docker.build makes it)", only=INVOKE))
    build: bool = True  # test-arm: smoke-test what is already built

    def replace(self, **changes: Any) -> RunOptions:
        return dataclasses.replace(self, **changes)


def cli_fields(cls: type = RunOptions, frontend: str = NOX) -> list[tuple[dataclasses.Field, Flag]]:
    """The fields of `cls` that `frontend` offers as options, in declaration order."""
    return [(f, f.metadata["flag"]) for f in dataclasses.fields(cls)
            if "flag" in f.metadata and frontend in f.metadata["flag"].frontends]


def _kind(cls: type, f: dataclasses.Field) -> Any:
    """The field's type with `| None` taken off: bool, int, Path, str or tuple."""
    hint = typing.get_type_hints(cls)[f.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is tuple:
        return tuple
    return args[0] if args else hint


def argparser(prog: str, cls: type = RunOptions, frontend: str = NOX) -> argparse.ArgumentParser:
    """An argparse parser with one option per field of `cls` that `frontend` offers."""
    parser = argparse.ArgumentParser(prog=prog)
    for f, fl in cli_fields(cls, frontend):
        names = [f"--{f.name.replace('_', '-')}", *([fl.short] if fl.short else [])]
        kind = _kind(cls, f)
        if kind is bool:
            action = argparse.BooleanOptionalAction if f.default is True else "store_true"
            parser.add_argument(*names, dest=f.name, action=action, default=f.default, help=fl.help)
        elif kind is tuple:
            parser.add_argument(*names, dest=f.name, action="append", default=None, help=fl.help)
        else:
            parser.add_argument(*names, dest=f.name, type=kind, default=f.default, help=fl.help)
    return parser


def from_args(ns: argparse.Namespace | dict[str, Any], cls: type = RunOptions) -> Any:
    """`cls` from parsed arguments (argparse's namespace or invoke's keyword arguments), with
    strings converted to each field's type; names `cls` lacks are left out."""
    values = vars(ns) if isinstance(ns, argparse.Namespace) else dict(ns)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in values or values[f.name] is None:
            continue
        value, kind = values[f.name], _kind(cls, f)
        if kind is tuple:
            out[f.name] = tuple(value)
        elif kind is bool:
            out[f.name] = bool(value)
        else:
            out[f.name] = kind(value)
    return cls(**out)


def invoke_help(cls: type = RunOptions) -> dict[str, str]:
    """invoke's `help=` dict for a task whose parameters are the invoke options of `cls`."""
    return {f.name: fl.help for f, fl in cli_fields(cls, INVOKE)}


def invoke_iterable(cls: type = RunOptions) -> list[str]:
    """invoke's `iterable=` list: the repeatable options of `cls`."""
    return [f.name for f, _fl in cli_fields(cls, INVOKE) if _kind(cls, f) is tuple]


def to_argv(options: Any, frontend: str = INVOKE) -> list[str]:
    """The command-line options that reproduce `options` (what differs from the defaults), e.g.
    to run the same build again inside the builder image."""
    argv: list[str] = []
    for f, _fl in cli_fields(type(options), frontend):
        value, name = getattr(options, f.name), f.name.replace("_", "-")
        if value == f.default:
            continue
        if isinstance(value, bool):
            argv.append(f"--{name}" if value else f"--no-{name}")
        elif isinstance(value, tuple):
            argv += [f"--{name}={v}" for v in value]
        else:
            argv.append(f"--{name}={value}")
    return argv
