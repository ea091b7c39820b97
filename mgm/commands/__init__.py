"""One module per `mgm` sub-command.

Each module defines `NAME` (the sub-command), `HELP` (one line), `add_arguments(parser)` and
`run(args) -> int | None`. Modules must import heavy libraries (torch, av, matplotlib) inside
`run`, never at module level, so that `mgm --help` stays fast.
"""
