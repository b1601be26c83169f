"""The ``eebguard`` command. Thin: it parses arguments and calls the library; no logic lives here.

Exit codes (modelscan conventions): 0 nothing flagged, 1 at least one model flagged (verdict "backdoor"
or "tampered"; ``--fail-on backdoor`` only the first, ``--fail-on leaky`` also "leaky"), 2 scan error or
a model left "unknown", 3 nothing scannable, 4 usage error.
"""
from __future__ import annotations

import argparse
import sys

from eebguard.cli.base import (
    COMMANDS, EXIT_CLEAN, EXIT_ERROR, EXIT_FLAGGED, EXIT_NOTHING, EXIT_USAGE, Command, Parser, UsageError,
)
from eebguard.records import printable

__all__ = ["COMMANDS", "Command", "EXIT_CLEAN", "EXIT_ERROR", "EXIT_FLAGGED", "EXIT_NOTHING", "EXIT_USAGE",
           "Parser", "UsageError", "build_parser", "main"]


def _quiet_libraries() -> None:
    """Library chatter (loading bars, cast warnings) would drown a scan's own output."""
    import logging
    import os
    import warnings

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    logging.getLogger("diffusers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        import diffusers.utils.logging as dlog

        dlog.set_verbosity_error()
        dlog.disable_progress_bar()
        import transformers.utils.logging as tlog

        tlog.set_verbosity_error()
        tlog.disable_progress_bar()
    except Exception:  # noqa: BLE001 - cosmetics must never block a scan
        pass


def build_parser() -> argparse.ArgumentParser:
    from eebguard import __version__

    p = Parser(prog="eebguard", description=__doc__.split("\n")[0])
    p.add_argument("--version", action="version", version=f"eebguard {__version__}")
    sub = p.add_subparsers(dest="command", parser_class=Parser)
    for _, cls in sorted(COMMANDS.items(), key=lambda kv: (kv[1].order, kv[0])):
        cls().add_to(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    _quiet_libraries()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"eebguard: error: {printable(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - a known failure becomes one line and exit code 2
        from eebguard.detect.persist import DetectorFormatError
        from eebguard.models import ModelLoadError

        if isinstance(exc, (DetectorFormatError, ModelLoadError, OSError)):
            print(f"eebguard: error: {type(exc).__name__}: {printable(str(exc).splitlines()[0]) if str(exc) else ''}",
                  file=sys.stderr)
            return EXIT_ERROR
        raise

