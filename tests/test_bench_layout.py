"""`./run bench NAME`: every name maps to an importable module of the `benchmarks` package, which
imports the installed `mgm` and never edits sys.path."""

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import load_benchmark

from benchmarks import BENCHMARKS

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_every_name_imports_a_module_with_a_main(name):
    module = load_benchmark(name)
    assert module.__name__ == BENCHMARKS[name]
    assert callable(module.main)


def test_no_benchmark_edits_sys_path():
    edits = [str(p.relative_to(ROOT)) for p in (ROOT / "benchmarks").rglob("*.py") if "sys.path" in p.read_text()]
    assert edits == []


def test_the_run_help_names_every_benchmark():
    head = (ROOT / "run").read_text().split("\nset -euo")[0]
    assert all(name in head for name in BENCHMARKS)


def bench(*args):
    return subprocess.run([sys.executable, "-m", "benchmarks", *args], cwd=ROOT, capture_output=True, text=True)


def test_an_unknown_name_gets_one_line_listing_the_known_ones():
    for args in (("nope",), ()):
        r = bench(*args)
        assert r.returncode == 2 and r.stdout == ""
        assert r.stderr.count("\n") == 1 and ", ".join(BENCHMARKS) in r.stderr


def test_a_name_runs_its_module_with_the_arguments():
    r = bench("plateau", "--help")
    assert r.returncode == 0 and r.stdout.startswith("usage: plateau.py") and "--window" in r.stdout
    r = bench("plateau", "/nonexistent")  # the benchmark's own error, not the dispatcher's
    assert r.returncode == 1 and "not an experiment folder" in r.stderr
