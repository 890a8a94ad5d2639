"""Shared command-line plumbing: bad input is one line on stderr and exit status 2, never a traceback."""
from __future__ import annotations

import sys

import typer

from seesaw.ir.errors import CommandError, InputError  # noqa: F401 (CommandError re-exported)


def _usage_error_types() -> tuple[type[Exception], ...]:
    """Exception classes for command-line usage errors (missing option, unknown option, bad value).

    typer >= 0.2x vendors click as ``typer._click`` (its errors derive from ``typer.TyperException``, and
    the ``click`` package may not be installed at all); older typer raises ``click.ClickException``.
    """
    types: list[type[Exception]] = []
    if hasattr(typer, "TyperException"):
        types.append(typer.TyperException)
    try:
        import click  # noqa: PLC0415 (optional: only older typer depends on it)
    except ImportError:
        pass
    else:
        types.append(click.ClickException)
    return tuple(types)


USAGE_ERRORS = _usage_error_types()


def version() -> str:
    """The installed package's version (``importlib.metadata``), or ``unknown`` when not installed."""
    from importlib.metadata import PackageNotFoundError  # noqa: PLC0415
    from importlib.metadata import version as _version  # noqa: PLC0415

    try:
        return _version("seesaw")
    except PackageNotFoundError:
        return "unknown"


def run_app(typer_app: typer.Typer, args: list[str], prog: str) -> int:
    """Run a typer app; map InputError and usage errors to status 2, CommandError to 1, Ctrl-C to 130.
    ``--version`` anywhere prints ``PROG VERSION`` and returns 0."""
    if "--version" in args:
        print(f"{prog} {version()}")
        return 0
    try:
        rv = typer_app(args=args, prog_name=prog, standalone_mode=False)
        if isinstance(rv, int) and not isinstance(rv, bool) and rv != 0:
            # typer turns Ctrl-C into an exit code (130) that non-standalone mode returns
            if rv == 130:
                print(f"{prog}: aborted", file=sys.stderr)
            return rv
    except InputError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except CommandError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    except typer.Exit as e:  # --help; typer.Exit is click's Exit under older typer
        return e.exit_code
    except (typer.Abort, KeyboardInterrupt):
        print(f"{prog}: aborted", file=sys.stderr)
        return 130
    except USAGE_ERRORS as e:  # missing or unknown option, unparsable value
        print(f"{prog}: error: {e.format_message()}", file=sys.stderr)
        return 2
    return 0


def print_table(table, width: int = 200) -> None:
    """Print a rich table whole: on a terminal narrower than the table, cells fold onto more lines instead
    of being cut to ``…``; into a file or pipe, lines up to ``width`` columns (no terminal to fit)."""
    from rich.console import Console  # noqa: PLC0415

    for col in table.columns:
        col.overflow = "fold"
    console = Console(emoji=False)
    if not console.is_terminal:
        console = Console(emoji=False, width=width)
    console.print(table)
