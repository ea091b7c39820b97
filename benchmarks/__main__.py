"""`python -m benchmarks NAME [ARGS]`: run benchmark NAME (see BENCHMARKS) with ARGS, as
`python -m benchmarks.GROUP.MODULE [ARGS]` would (what `./run bench NAME` calls)."""

from __future__ import annotations

import runpy
import sys

from benchmarks import BENCHMARKS


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else ""
    if name not in BENCHMARKS:
        what = f"unknown benchmark {name!r}" if name else "usage: ./run bench NAME [ARGS]"
        print(f"{what}; NAME is one of: {', '.join(BENCHMARKS)}", file=sys.stderr)
        raise SystemExit(2)
    del sys.argv[1]
    # alter_sys: sys.argv[0] and sys.modules["__main__"] become the benchmark's, as under `-m`.
    runpy.run_module(BENCHMARKS[name], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
