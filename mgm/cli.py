"""The `mgm` command: discovers sub-commands in mgm/commands/, parses, and turns MGMError into one line."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from mgm import __version__, commands
from mgm.errors import MGMError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mgm",
        description="Motion-guided masking (Fan et al., ICCV 2023) for video masked autoencoders: "
        "motion read from the H.264/MPEG-4 motion vectors, masks placed where the video moves.",
    )
    parser.add_argument("--version", action="version", version=f"mgm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"mgm.commands.{info.name}")
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.__doc__ or module.HELP,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except MGMError as e:
        print(f"mgm {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"mgm {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
