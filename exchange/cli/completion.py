"""``ibx completion bash|zsh|fish``: print the shell completion script.

Install it the usual way, e.g.
``ibx completion bash > ~/.local/share/bash-completion/completions/ibx``, or
``eval "$(ibx completion zsh)"`` in ``~/.zshrc``.
"""

from __future__ import annotations

import enum

import typer
from typer._completion_shared import get_completion_script

__all__ = ["completion"]

COMPLETE_VAR = "_IBX_COMPLETE"
"""The environment variable the scripts set when they ask ``ibx`` for completions."""


class Shell(enum.Enum):
    """Shells ``ibx completion`` writes scripts for."""

    BASH = "bash"
    ZSH = "zsh"
    FISH = "fish"


def completion(shell: Shell = typer.Argument(..., help="bash, zsh or fish")) -> None:  # noqa: B008
    """Print the shell completion script for bash, zsh or fish."""
    script = get_completion_script(prog_name="ibx", complete_var=COMPLETE_VAR, shell=shell.value)
    typer.echo(script)
