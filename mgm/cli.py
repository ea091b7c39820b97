"""The `mgm` command: discovers sub-commands in mgm/commands/, parses, and turns MGMError into one line."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import warnings

from mgm import __version__, commands
from mgm.errors import MGMError, Stopped


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every sub-command, or of `command` only (what `mgm COMMAND ...` needs:
    importing and listing the others' modules cost 30-40 ms of start-up on a loaded 2-core machine)."""
    parser = argparse.ArgumentParser(
        prog="mgm",
        description="Motion-guided masking (Fan et al., ICCV 2023) for video masked autoencoders: "
        "motion read from the H.264/MPEG-4 motion vectors, masks placed where the video moves.",
    )
    parser.add_argument("--version", action="version", version=f"mgm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    if command:
        names = [command]
    else:
        import pkgutil

        names = sorted(m.name for m in pkgutil.iter_modules(commands.__path__))
    for name in names:
        module = importlib.import_module(f"mgm.commands.{name}")
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.__doc__ or module.HELP,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv[0] if argv and _is_command(argv[0]) else None)
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    warnings.formatwarning = _one_line_warning
    try:
        return int(args._run(args) or 0)
    except Stopped as e:
        from mgm.train.stopping import exit_code

        print(f"mgm {args.command}: {e}", file=sys.stderr)
        return exit_code(e.signal_name)
    except MGMError as e:
        print(f"mgm {args.command}: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # a write no command anticipated (disk full, read-only): still one line
        where = f"{e.filename}: " if e.filename else ""
        print(f"mgm {args.command}: error: {where}{(e.strerror or str(e)).lower()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"mgm {args.command}: interrupted", file=sys.stderr)
        return 130


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """Warnings as users read them: what and which file, not the Python source line that warned."""
    return f"mgm: warning: {message}\n"


def _is_command(name: str) -> bool:
    if not name.isidentifier() or name.startswith("_"):
        return False
    return importlib.util.find_spec(f"mgm.commands.{name}") is not None


if __name__ == "__main__":
    sys.exit(main())
