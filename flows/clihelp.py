"""Help pages that name values by what they are (``SECONDS``, ``KEY``), never by Python type names.

typer (0.2x) fills a column of each help page from the annotations: ``<path>`` for an
argument even when it has a metavar, ``<bool>`` for every flag and for ``--help``, and
``<list[str]>`` for a repeatable option. An option with a ``metavar`` shows that
instead, so the commands give every valued option one; :class:`PlainHelpGroup` leaves
the column empty for arguments (their name, or metavar, already says what they are)
and for flags (they take no value).
"""

from __future__ import annotations

from typing import Any

import typer.core


class _NamedArgument(typer.core.TyperArgument):
    """An argument whose help shows its name (or metavar) only, without a type name."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None


def _without_type_names(command: Any) -> None:
    """Give ``command``'s arguments and flags help entries without type names (in place)."""
    for param in command.params:
        if type(param) is typer.core.TyperArgument:
            # typer builds its own argument objects, with no hook for a class of ours
            param.__class__ = _NamedArgument
        elif getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""  # a flag takes no value: nothing to name


def _help_option_without_type(option: Any) -> Any:
    """The ``--help`` flag, with no type name in its help entry."""
    if option is not None:
        option.metavar = ""
    return option


class _PlainHelpCommand(typer.core.TyperCommand):
    """A typer command whose ``--help`` entry shows no type name."""

    def get_help_option(self, ctx: Any) -> Any:
        return _help_option_without_type(super().get_help_option(ctx))


class PlainHelpGroup(typer.core.TyperGroup):
    """The app's group: its help, and every command's, name values by metavar only (``typer.Typer(cls=...)``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _without_type_names(self)
        for command in self.commands.values():
            if type(command) is typer.core.TyperCommand:
                command.__class__ = _PlainHelpCommand  # as above: typer makes the command objects itself
            _without_type_names(command)

    def get_help_option(self, ctx: Any) -> Any:
        return _help_option_without_type(super().get_help_option(ctx))
