"""Command-line settings, declared once for both programs: each is a field of a frozen dataclass whose
metadata (:func:`setting`) gives its help, choices and bounds; the flag (``--max-body-bytes``) and the
environment variable (``MCPTB_MAX_BODY_BYTES``) are derived from the field's name, the type and the
default from the field itself.

A value from the environment is checked exactly like a flag (type, choices, bounds) and a bad one is
a one-line usage error naming the variable, never a traceback or a silent default. A flag wins over
the variable. No I/O: the caller passes ``argv`` and the environment.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

ENV_PREFIX = "MCPTB_"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
_KINDS: dict[str, type] = {"str": str, "str | None": str, "int": int, "float": float, "bool": bool}
_KIND_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def setting(
    help: str,
    *,
    choices: Sequence[str] = (),
    positive: bool = False,
    minimum: float | None = None,
    shown_default: str | None = None,
) -> dict[str, Any]:
    """The metadata of one setting's field: ``field(default=..., metadata=setting(...))``. ``shown_default``
    is the default in words, for a field whose real default is computed at start (the socket path): the
    settings reference (docs/settings.md, generated from these fields) shows it instead of the field's."""
    return {
        "help": help,
        "choices": tuple(choices),
        "positive": positive,
        "minimum": minimum,
        "shown_default": shown_default,
    }


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def package_version() -> str:
    """The installed version of mcp-token-bridge ("0" when run from a source tree never installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mcp-token-bridge")
    except PackageNotFoundError:
        return "0"


class _VersionAction(argparse.Action):
    """``--version``: the program's name and version, read only now (argparse's own needs the string)."""

    version: Callable[[], str]
    """Set by ``parse_settings`` once the action exists."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS) -> None:
        super().__init__(option_strings, dest, default=argparse.SUPPRESS, nargs=0, help="show the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, *_: object) -> None:
        print(f"{parser.prog} {self.version()}")  # on stdout, as argparse's own
        parser.exit()


def parse_settings(
    kind: type[T],
    argv: Sequence[str] | None,
    environ: Mapping[str, str],
    *,
    prog: str,
    description: str,
    defaults: Mapping[str, Any] | None = None,
    version: Callable[[], str] | None = None,
) -> tuple[T, argparse.ArgumentParser]:
    """Parse ``argv`` over the environment over the dataclass's defaults (or ``defaults``); exit with
    a usage error (status 2) on a bad value. Returns the settings and the parser (for later errors).
    ``version`` is asked only for ``--version`` (reading the installed metadata costs start-up time)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    if version is not None:
        action = parser.add_argument("--version", action=_VersionAction)
        assert isinstance(action, _VersionAction)
        action.version = version
    for field in dataclasses.fields(kind):  # type: ignore[arg-type]
        meta = field.metadata
        py_type = _KINDS[str(field.type)]
        default = (defaults or {}).get(field.name, field.default)
        raw = environ.get(env_name(field.name))
        if raw is not None:
            default = _from_env(parser, field.name, py_type, raw, meta)
        help_text = f"{meta['help']} [env {env_name(field.name)}]"
        if py_type is bool:
            parser.add_argument(
                flag_name(field.name), action=argparse.BooleanOptionalAction, default=default, help=help_text
            )
            continue
        parser.add_argument(
            flag_name(field.name),
            type=_checked(py_type, meta["positive"], meta["minimum"]),
            default=default,
            choices=meta["choices"] or None,
            help=help_text,
        )
    values = vars(parser.parse_args(argv))
    return kind(**values), parser


def _checked(py_type: type, positive: bool, minimum: float | None) -> Any:
    def convert(text: str) -> Any:
        try:
            value = py_type(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {_KIND_NAMES[py_type]}") from None
        if positive and not value > 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be positive")
        if minimum is not None and value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} must be at least {minimum:g}")
        return value

    convert.__name__ = py_type.__name__
    return convert


def _from_env(parser: argparse.ArgumentParser, name: str, py_type: type, raw: str, meta: Mapping[str, Any]) -> Any:
    where = f"{env_name(name)}={raw!r}"
    value: Any
    if py_type is bool:
        if raw.strip().lower() not in _TRUE + _FALSE:
            parser.error(f"{where}: must be one of {', '.join(_TRUE + _FALSE)}")
        return raw.strip().lower() in _TRUE
    try:
        value = _checked(py_type, meta["positive"], meta["minimum"])(raw.strip())
    except argparse.ArgumentTypeError as exc:
        parser.error(f"{where}: {exc}")
    if meta["choices"]:
        canonical = {choice.lower(): choice for choice in meta["choices"]}  # MCPTB_BACKEND=Trio is fine
        if str(value).lower() not in canonical:
            parser.error(f"{where}: must be one of {', '.join(meta['choices'])}")
        return canonical[str(value).lower()]
    return value
