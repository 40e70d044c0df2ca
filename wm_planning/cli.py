"""``wm-plan``: one command-line entry point with sub-commands.

Sub-commands register themselves with :func:`command` in modules under
:mod:`wm_planning.commands` (every module there is imported on start), so adding one touches
only its own module. Names may have several words (``bench planners``, ``ros up``); the longest
registered prefix of the arguments wins. Options after the name follow Hydra habits:
``key=value`` overrides plus a few ``--flags``.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Callable
from dataclasses import dataclass

CommandFn = Callable[[list[str]], int]


@dataclass(frozen=True)
class _Command:
    name: str
    help: str
    fn: CommandFn


_COMMANDS: dict[str, _Command] = {}


def command(name: str, help: str) -> Callable[[CommandFn], CommandFn]:
    """Register ``fn(argv) -> exit code`` as ``wm-plan <name> ...``."""

    def deco(fn: CommandFn) -> CommandFn:
        if name in _COMMANDS and _COMMANDS[name].fn is not fn:
            raise ValueError(f"command {name!r} registered twice")
        _COMMANDS[name] = _Command(name, help, fn)
        return fn

    return deco


def _load_commands() -> None:
    from wm_planning import commands

    for mod in pkgutil.iter_modules(commands.__path__):
        importlib.import_module(f"{commands.__name__}.{mod.name}")


def _usage() -> str:
    lines = ["usage: wm-plan <command> [key=value ...] [--flags]", "", "commands:"]
    width = max((len(n) for n in _COMMANDS), default=10)
    lines += [
        f"  {c.name:<{width}}  {c.help}" for c in sorted(_COMMANDS.values(), key=lambda c: c.name)
    ]
    lines.append("\n`wm-plan <command> --help` for a command's options.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    _load_commands()
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    for n in range(min(len(args), 3), 0, -1):
        name = " ".join(args[:n])
        if name in _COMMANDS:
            return int(_COMMANDS[name].fn(args[n:]) or 0)
    print(f"wm-plan: unknown command {' '.join(args[:2])!r}\n", file=sys.stderr)
    print(_usage(), file=sys.stderr)
    return 2


if __name__ == "__main__":
    # Re-enter through the package module: as ``__main__`` this file is a second copy whose
    # registry the command modules (importing ``wm_planning.cli``) never fill.
    from wm_planning.cli import main as _main

    raise SystemExit(_main())
