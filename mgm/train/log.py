"""Per-run log: one JSON object per line in runs/<name>/log.jsonl (rank 0), and the same scalars
as TensorBoard events in runs/<name>/tb when TensorBoard is installed (one line says so when not)."""

from __future__ import annotations

import json
import time
from pathlib import Path


class RunLog:
    """Append-only JSONL log. Every record gets `event` and wall-clock `time`; numbers are logged as
    is so that `pandas.read_json(path, lines=True)` or a 3-line script can plot a run.
    Inactive (no files, no output) on ranks other than 0."""

    def __init__(self, run_dir: str | Path, active: bool = True, tensorboard: bool = True, name: str = ""):
        self.active = active
        self.path = Path(run_dir) / "log.jsonl"
        self._tb = None
        if not active:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if tensorboard:
            try:  # optional (`./run setup` installs it): the same scalars, for TensorBoard users
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                print(f"[{name or Path(run_dir).name}] TensorBoard is not installed, so the scalars are in "
                      f"{self.path} only; `pip install tensorboard` (or ./run setup) adds {Path(run_dir) / 'tb'}",
                      flush=True)
            else:
                self._tb = SummaryWriter(str(Path(run_dir) / "tb"))

    def write(self, event: str, **fields) -> None:
        if not self.active:
            return
        record = {"event": event, "time": round(time.time(), 3), **fields}
        with open(self.path, "a") as f:
            f.write(json.dumps(record, default=str) + "\n")
        if self._tb is not None and "step" in fields:
            for k, v in fields.items():
                if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
                    self._tb.add_scalar(f"{event}/{k}", v, fields["step"])

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def read_log(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
