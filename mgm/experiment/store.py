"""An experiment folder's contents: the benchmark under OUT/data (generated once, shared by the
runners), the label-fraction lists, run names, and the stored records (OUT/recipe.json,
OUT/results/*.json as typed records of mgm.experiment.records, each run's log.jsonl), read with
one-line errors for damaged files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from mgm.errors import MGMError
from mgm.experiment.recipes import Preset
from mgm.experiment.records import Record, Tag, record_from_dict
from mgm.files import write_text


def prepare_data(data: Path, preset: Preset, progress: bool = True) -> dict[str, Path]:
    """Generate the benchmark (and its shifted variant) under `data` once, or reuse the one there
    (several recipe folders can share one benchmark); write the label-fraction lists. Runners
    started together take turns: the first generates, the others wait for it."""
    import fcntl

    data.mkdir(parents=True, exist_ok=True)
    with open(data / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if progress:
                print(f"waiting for another runner to generate the benchmark in {data}", file=sys.stderr)
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if that process dies
        return _prepare_data(data, preset, progress)


def _prepare_data(data: Path, preset: Preset, progress: bool) -> dict[str, Path]:
    from mgm.data import synth
    from mgm.data.lists import read_list, write_list

    roots = {"base": data / "base"}
    if preset.transfer:
        roots["shifted"] = data / "shifted"
    for variant, root in roots.items():
        meta = root / "meta.json"
        if not _generated(root):
            synth.generate(str(root), preset=preset.synth, seed=0 if variant == "base" else 1,
                           variant=variant, progress=progress)
        made = json.loads(meta.read_text())
        if (made.get("preset"), made.get("variant")) != (preset.synth, variant):
            raise MGMError(f"{root}: holds the {made.get('preset')} benchmark ({made.get('variant')}), "
                           f"this recipe needs {preset.synth} ({variant}); choose another --data")
        samples = read_list(root / "train.txt")
        labels = np.array([s.label for s in samples])
        order = np.random.default_rng(0).permutation(len(samples))  # one fixed subset for all seeds
        for frac in preset.label_fractions:
            path = root / f"train_{frac:g}.txt"
            if frac < 1 and not path.exists():
                keep = [i for c in np.unique(labels) for i in
                        order[labels[order] == c][:max(1, round(frac * (labels == c).sum()))]]
                write_list(path, [(samples[i].path, samples[i].label) for i in sorted(keep)])
    return roots


def _generated(root: Path) -> bool:
    """True when `mgm synth` finished there: it writes meta.json first and the split lists last, so
    an interrupted generation is redone (over the same meta) instead of failing later."""
    meta = root / "meta.json"
    if not meta.exists():
        return False
    splits = json.loads(meta.read_text()).get("per_class", {})
    return all((root / f"{split}.txt").exists() for split in splits)


def _num_clips(list_file: Path) -> int:
    from mgm.data.lists import read_list

    return len(read_list(list_file))


def finetune_run_name(tag: Tag | str, frac: float, seed: int, variant: str = "base") -> str:
    """The folder (under OUT/runs/) of one fine-tuning run, e.g. 'finetune-base-mgm-0.75@4000-f1-s0'."""
    return f"finetune-{variant}-{tag}-f{frac:g}-s{seed}"


def train_list(root: Path, frac: float) -> Path:
    return root / ("train.txt" if frac >= 1 else f"train_{frac:g}.txt")


def _read_json(path: Path, what: str, remedy: str, parse=None):
    """A JSON file the runner wrote, through `parse` if given (e.g. into a typed record); one that
    is not JSON (edited by hand, a full disk), or that `parse` refuses (ValueError / TypeError), is
    a one-line MGMError naming it and what to do, not a traceback. The file is left as it was."""
    try:
        data = json.loads(path.read_text())
        return data if parse is None else parse(data)
    except (ValueError, TypeError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise MGMError(f"{path}: not a readable {what} ({err}); {remedy}") from None


def _read_recipe(path: Path) -> dict:
    return _read_json(path, "recipe", "delete it only if the folder's results are of this recipe")


def read_result(path: Path) -> Record:
    """One stored unit (OUT/results/*.json) as its typed record, for the runner, the report and the
    benchmarks; a file that is none is a one-line MGMError naming it, left as it was."""
    return _read_json(path, "result", "delete it to run that unit again", parse=record_from_dict)


def read_results(folder: Path) -> list[Record]:
    """Every record of an experiment folder (OUT/results/*.json), in file-name order."""
    return [read_result(f) for f in sorted((Path(folder) / "results").glob("*.json"))]


def write_result(path: Path, record: Record) -> Record:
    """Store one unit's record (atomically: a crash leaves the old file or none)."""
    write_text(path, json.dumps(record.to_dict(), indent=1))
    return record


def _recipe_diff(stored: dict, preset: Preset, keys) -> list[str]:
    """The names among `keys` (in their order) where a folder's stored recipe.json differs from
    `preset`'s record; a name added since the folder was made counts as its default there."""
    ours, defaults = preset.record(), Preset(synth="", arms=()).record()
    return [k for k in keys if stored.get(k, defaults.get(k)) != ours.get(k)]


def run_losses(run_dir: Path) -> list:
    """[(step, training loss)] from the run's JSONL log (not its evaluation lines); [] if none."""
    path = Path(run_dir) / "log.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if rec.get("event") == "step" and "loss" in rec:
            out.append((rec["step"], round(rec["loss"], 5)))
    return out
