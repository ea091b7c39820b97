"""`./run bench hidden`: object tokens from the synth ground truth, and the shares it reports."""

import numpy as np
import pytest
from conftest import load_benchmark

from mgm.config import Geometry


@pytest.fixture(scope="module")
def hidden():
    return load_benchmark("hidden")


def test_object_tokens_follow_the_recorded_object(hidden):
    g = Geometry(num_frames=4, size=48, patch=8)  # 2 slots of 6 x 6 tokens
    # At 96 px (the source), a disc of radius 9.6 px centred on token (1, 2), then on token (4, 3)
    # in the second slot: at 48 px it covers its own patch fully and < 50% of any neighbour.
    centre = [[40, 24], [40, 24], [56, 72], [56, 72]]
    record = {"centre": centre, "radius": 9.6, "scale": [1.0] * 4}
    tokens = hidden.object_tokens(record, np.arange(4), g, source_size=96)
    expected = np.zeros(g.grid, bool)
    expected[0, 1, 2] = expected[1, 4, 3] = True
    np.testing.assert_array_equal(tokens, expected)


def test_measure_counts_hidden_gone_and_copyable(hidden):
    objects = np.zeros((1, 3, 2, 2), bool)
    objects[0, :, 0, 0] = True          # a static object on token (0, 0) in 3 slots
    objects[0, 1, 0, 1] = True          # and on (0, 1) in slot 1
    masks = np.zeros_like(objects)
    masks[0, 0, 0, 0] = True            # slot 0: its only object token hidden -> gone
    masks[0, 1, 0, 1] = True            # slot 1: one of two hidden
    r = hidden.measure(masks, objects)
    assert r["object hidden"] == pytest.approx(2 / 4)  # 4 object tokens in all
    assert r["object gone"] == pytest.approx(1 / 3)
    # (0,0) in slot 0 is visible in slot 1; (0,1) in slot 1 is on the object in no other slot
    assert r["copyable"] == pytest.approx(1 / 2)


def test_join_takes_each_arms_last_all_label_fine_tune(hidden):
    table = {"tube-0.75": {"object gone": 0.5}, "mgm-0.75": {"object gone": 0.9},
             "mgm-0.9": {"object gone": 0.99}}
    summary = {"finetune": {
        "base|tube-0.75|1344|1.0": [1.0], "base|tube-0.75|4000|1.0": [27.0, 29.0],
        "base|tube-0.75|4000|0.1": [5.0],          # a label fraction: not this view
        "shifted|mgm-0.75|4000|1.0": [7.0],         # transfer: not this view
        "base|mgm-0.75|4000|1.0": [30.0], "base|scratch|None|1.0": [13.0, 14.0],
        "base|random-0.9|4000|1.0": [20.0]}}       # an arm the table does not measure
    assert hidden.join(table, summary) == {"mgm-0.75": (table["mgm-0.75"], [30.0]), "scratch": (None, [13.0, 14.0]),
                                           "tube-0.75": (table["tube-0.75"], [27.0, 29.0])}


def test_named_arms_on_synth_clips(hidden, tmp_path):
    """End to end on real `mgm synth` clips: arms by name, and MGM aims at the moving object."""
    import json

    from mgm.cli import main as mgm

    assert mgm(["synth", str(tmp_path / "d"), "--preset", "tiny"]) == 0
    out = tmp_path / "h.json"
    assert hidden.main(["--data", str(tmp_path / "d"), "--split", "val", "--seeds", "2", "--out", str(out),
                        "--arms", "tube-0.75", "mgm-0.75", "mgm-0.75-focus0"]) == 0
    table = json.loads(out.read_text())["table"]
    assert list(table) == ["tube-0.75", "mgm-0.75", "mgm-0.75-focus0"]
    # tube and focus 0 (every masked token at random) hide ~75% of the object's tokens, MGM more
    assert table["tube-0.75"]["object hidden"] == pytest.approx(0.75, abs=0.1)
    assert table["mgm-0.75-focus0"]["object hidden"] == pytest.approx(0.75, abs=0.1)
    assert table["mgm-0.75"]["object hidden"] > table["tube-0.75"]["object hidden"] + 0.1
    with pytest.raises(SystemExit, match="mgm-0.75-nope1"):
        hidden.main(["--data", str(tmp_path / "d"), "--split", "val", "--arms", "mgm-0.75-nope1"])
