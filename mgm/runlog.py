"""Per-run log: one JSON object per line in runs/<name>/log.jsonl (rank 0), TensorBoard if installed."""

from __future__ import annotations

import json
import time
from pathlib import Path


class RunLog:
    """Append-only JSONL log. Every record gets `event` and wall-clock `time`; numbers are logged as
    is so that `pandas.read_json(path, lines=True)` or a 3-line script can plot a run.
    Inactive (no files, no output) on ranks other than 0."""

    def __init__(self, run_dir: str | Path, active: bool = True, tensorboard: bool = True):
        self.active = active
        self.path = Path(run_dir) / "log.jsonl"
        self._tb = None
        if not active:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if tensorboard:
            try:  # optional: only if the user has it installed
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(Path(run_dir) / "tb"))
            except Exception:
                self._tb = None

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


def read_log(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
