"""What every ``eebguard`` subcommand shares: exit codes, the usage error, the argument parser that exits
4 on bad usage, and the ``Command`` plugin contract.

Subcommands are plugins found by ``COMMANDS`` like every other kind: the product's (``scan``,
``scan-hub``) are the modules of this package; others (the lab's ``testbed``, ``zoo``, ``detector``,
``evaluate``) come from the ``eebguard.commands`` entry-point group, so the product never imports them.
"""
from __future__ import annotations

import argparse
import json
import sys

from eebguard.registry import Plugin, Registry

EXIT_CLEAN, EXIT_FLAGGED, EXIT_ERROR, EXIT_NOTHING, EXIT_USAGE = 0, 1, 2, 3, 4


class UsageError(Exception):
    """Bad arguments: exit code 4."""


class Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse exits 2 by default; usage errors are 4 here
        self.print_usage(sys.stderr)
        print(f"eebguard: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


class Command(Plugin):
    """A subcommand (or a group of them): ``add_to`` adds its parser(s) to ``eebguard``'s subparsers and
    sets ``func`` (``args -> exit code``) on each. ``order`` places it in ``eebguard --help``."""

    described = ("order",)
    help: str = ""
    order: int = 100

    @classmethod
    def summary(cls) -> str:
        return cls.help

    def add_to(self, sub) -> None:
        raise NotImplementedError


COMMANDS: Registry[Command] = Registry("command", package="eebguard.cli", group="eebguard.commands")


def print_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=float))
