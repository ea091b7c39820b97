"""`./run bench rescore`: which runs it scores and how it lays out their top-1."""

import pytest
from conftest import load_benchmark


@pytest.fixture(scope="module")
def rescore():
    return load_benchmark("rescore")


def test_run_names_parse_like_the_experiment_names_them(rescore):
    from mgm.experiment import Arm

    arm = Arm("mgm", 0.75, (("focus", 0.5),)).name
    assert rescore.parse_run(f"finetune-base-{arm}@4000-f1-s2") == ("mgm-0.75-focus0.5", "4000", 2)
    assert rescore.parse_run("finetune-base-scratch-f1-s10") == ("scratch", "None", 10)
    assert rescore.parse_run("finetune-base-tube-0.75@1344-f0.1-s0") is None    # 10% of labels
    assert rescore.parse_run("finetune-shifted-tube-0.75@4000-f1-s0") is None   # transfer
    assert rescore.parse_run("pretrain-tube-0.75-s0") is None


def test_collect_orders_each_cell_by_seed(rescore):
    scores = {"finetune-base-tube-0.75@4000-f1-s1": 20.0, "finetune-base-tube-0.75@4000-f1-s0": 30.0,
              "finetune-base-tube-0.75@1344-f1-s0": 25.0, "finetune-base-scratch-f1-s0": 12.5}
    assert rescore.collect(scores) == {"base|scratch|None|1.0": [12.5], "base|tube-0.75|1344|1.0": [25.0],
                                       "base|tube-0.75|4000|1.0": [30.0, 20.0]}
