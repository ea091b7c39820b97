"""The records stored under docs/results/ (every measured experiment's per-run results) still load
as typed records, write back as the same JSON, and `mgm experiment masking --report-only` over them
prints the table it printed before the record store was typed (tests/data/stored_report_tables.json,
made by the runner of 2026-12-03 over the same files)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from mgm.cli import main
from mgm.experiment.records import FineTune, Pretraining, Probe, record_from_dict

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOT = json.loads((ROOT / "tests" / "data" / "stored_report_tables.json").read_text())


def _record_lists() -> dict[str, list[dict]]:
    """{file name: its stored records} for every docs/results file that holds records."""
    out = {}
    for path in sorted((ROOT / "docs" / "results").glob("experiment_*.json")):
        d = json.loads(path.read_text())
        if isinstance(d, list):
            out[path.name] = d
        elif isinstance(d, dict) and isinstance(d.get("records"), dict):
            out[path.name] = list(d["records"].values())
        elif isinstance(d, dict) and isinstance(d.get("runs"), list):
            out[path.name] = d["runs"]
    return out


def test_every_stored_record_loads_typed_and_writes_back_the_same_json():
    kinds = set()
    lists = _record_lists()
    assert len(lists) >= 10
    for name, records in lists.items():
        for d in records:
            r = record_from_dict(d)
            kinds.add(type(r))
            assert r.to_dict() == d, name
    assert kinds == {FineTune, Pretraining, Probe}  # every kind is among them
    probe = record_from_dict({"tag": "mgm-0.75@12", "seed": 1, "mean": 40.0, "slots": 55.0})
    assert isinstance(probe, Probe) and probe.tag.step == 12 and probe.tag.arm == "mgm-0.75"
    with pytest.raises(ValueError, match="neither"):
        record_from_dict({"top1": 3})


@pytest.mark.parametrize("name", sorted(SNAPSHOT))
def test_report_only_on_stored_records_prints_the_same_table(tmp_path, name):
    records = _record_lists()[name]
    (tmp_path / "results").mkdir()
    for i, r in enumerate(records):
        (tmp_path / "results" / f"r{i:03d}.json").write_text(json.dumps(r))
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["experiment", "masking", "--preset", SNAPSHOT[name]["preset"], "--out", str(tmp_path),
                   "--report-only"])
    assert rc == 0
    assert buf.getvalue().replace(str(tmp_path), "OUT") == SNAPSHOT[name]["stdout"]


def test_the_snapshot_covers_every_stored_record_list():
    assert set(_record_lists()) - {"experiment_small_pilots.json"} == set(SNAPSHOT)
