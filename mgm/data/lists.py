"""List files in VideoMAE's format, and builders that write them from the official split files.

A list file has one video per line: `path label`, separated by whitespace, the label a 0-based
integer. Paths may contain spaces (the label is the last field). Relative paths are joined to an
optional root. Builders turn the split files that UCF101, HMDB51, Something-Something V2 and
Kinetics ship with into such lists, with class indices in a stable (sorted / official) order.
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from mgm.errors import MGMError
from mgm.files import atomic_write, write_text


@dataclass(frozen=True)
class Sample:
    """One line of a list file: a video path (root already joined) and its 0-based label."""

    path: str
    label: int
    line: int = field(default=0, compare=False)  # line number in its list file (for error messages)


def read_list(list_path, root=None) -> list[Sample]:
    """Parse a VideoMAE list file; relative paths are joined to `root` when given.

    Raises MGMError naming the file, the line number and the reason for any malformed line.
    """
    list_path = Path(list_path)
    if not list_path.is_file():
        raise MGMError(f"{list_path}: list file not found")
    samples = []
    with open(list_path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.rsplit(None, 1)
            if len(parts) != 2:
                raise MGMError(f"{list_path}:{lineno}: expected 'path label', got {line!r}")
            path, label = parts
            try:
                label = int(label)
            except ValueError:
                raise MGMError(f"{list_path}:{lineno}: label {label!r} is not an integer") from None
            if label < 0:
                raise MGMError(f"{list_path}:{lineno}: label {label} is negative (labels are 0-based)")
            if root is not None and not os.path.isabs(path):
                path = os.path.join(root, path)
            samples.append(Sample(path, label, lineno))
    if not samples:
        raise MGMError(f"{list_path}: list file has no entries")
    return samples


def write_list(list_path, samples) -> None:
    """Write (path, label) pairs as a list file, atomically (temp file + rename)."""
    list_path = Path(list_path)
    with atomic_write(list_path, "w", encoding="utf-8") as f:
        for path, label in samples:
            if "\n" in str(path):
                raise MGMError(f"{list_path}: path {path!r} contains a newline")
            f.write(f"{path} {int(label)}\n")


def write_classes(path, classes) -> None:
    """Write class names, one per line, line i = label i."""
    write_text(path, "".join(f"{c}\n" for c in classes))


def _lines(path):
    path = Path(path)
    if not path.is_file():
        raise MGMError(f"{path}: split file not found")
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            yield lineno, line.strip()


# ---------------------------------------------------------------- UCF101
def ucf101(split_dir, split: int = 1, ext: str | None = None):
    """UCF101 from `classInd.txt`, `trainlist0{split}.txt`, `testlist0{split}.txt`.

    classInd lines are `1 ApplyEyeMakeup` (1-based); train lines `Class/v_..._c01.avi 1`; test lines
    have no label, which comes from the class folder. Returns (classes, {"train": [...], "test": [...]}).
    """
    split_dir = Path(split_dir)
    classes = {}
    for lineno, line in _lines(split_dir / "classInd.txt"):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise MGMError(f"{split_dir / 'classInd.txt'}:{lineno}: expected 'index ClassName', got {line!r}")
        classes[parts[1]] = int(parts[0]) - 1
    names = [n for n, _ in sorted(classes.items(), key=lambda kv: kv[1])]
    if [classes[n] for n in names] != list(range(len(names))):
        raise MGMError(f"{split_dir / 'classInd.txt'}: class indices are not 1..{len(names)}")
    out = {}
    for part in ("train", "test"):
        f = split_dir / f"{part}list0{split}.txt"
        rows = []
        for lineno, line in _lines(f):
            rel = line.split()[0]
            cls = rel.replace("\\", "/").split("/")[0]
            if cls not in classes:
                raise MGMError(f"{f}:{lineno}: class folder {cls!r} is not in classInd.txt")
            rows.append((_with_ext(rel, ext), classes[cls]))
        out[part] = rows
    return names, out


# ---------------------------------------------------------------- HMDB51
_HMDB_SPLIT = re.compile(r"^(?P<cls>.+)_test_split(?P<split>\d)\.txt$")


def hmdb51(split_dir, split: int = 1, ext: str | None = None):
    """HMDB51 from `<class>_test_split{split}.txt` files whose lines are `name.avi 1|2|0`.

    1 = train, 2 = test, 0 = unused. Classes are sorted by name; paths are `<class>/<name>`.
    """
    split_dir = Path(split_dir)
    files = {}
    for f in sorted(split_dir.iterdir()) if split_dir.is_dir() else []:
        m = _HMDB_SPLIT.match(f.name)
        if m and int(m["split"]) == split:
            files[m["cls"]] = f
    if not files:
        raise MGMError(f"{split_dir}: no '*_test_split{split}.txt' files")
    names = sorted(files)
    out = {"train": [], "test": []}
    for label, cls in enumerate(names):
        for lineno, line in _lines(files[cls]):
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise MGMError(f"{files[cls]}:{lineno}: expected 'name.avi 0|1|2', got {line!r}")
            if parts[1] != "0":
                out["train" if parts[1] == "1" else "test"].append((_with_ext(f"{cls}/{parts[0]}", ext), label))
    return names, out


# ---------------------------------------------------------------- Something-Something V2
def ssv2(labels_json, train_json, val_json, ext: str = ".webm"):
    """SSv2 from `labels.json` ({template: "index"}) and the train / validation json lists.

    Each entry's `template` with brackets removed ("Putting [something] on a surface" ->
    "Putting something on a surface") is looked up in labels.json; the path is `<id><ext>`
    (use ext=".mp4" after `mgm transcode`).
    """
    labels = _load_json(labels_json)
    if not isinstance(labels, dict):
        raise MGMError(f"{labels_json}: expected an object {{template: index}}")
    idx = {k: int(v) for k, v in labels.items()}
    names = [n for n, _ in sorted(idx.items(), key=lambda kv: kv[1])]
    out = {}
    for part, path in (("train", train_json), ("val", val_json)):
        rows = []
        for i, entry in enumerate(_load_json(path)):
            try:
                template = entry["template"].replace("[", "").replace("]", "")
                rows.append((f"{entry['id']}{ext}", idx[template]))
            except (KeyError, TypeError, AttributeError) as e:
                raise MGMError(f"{path}: entry {i}: missing or unknown field {e}") from None
        out[part] = rows
    return names, out


def _load_json(path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MGMError(f"{path}: file not found") from None
    except json.JSONDecodeError as e:
        raise MGMError(f"{path}: invalid JSON ({e})") from None


# ---------------------------------------------------------------- Kinetics
def kinetics(csv_paths, ext: str = ".mp4", by_class: bool = False):
    """Kinetics from csv files with the header `label,youtube_id,time_start,time_end,split`.

    Videos are named `<youtube_id>_<start:06d>_<end:06d><ext>` (the usual downloader naming), under
    a `<label>/` folder when by_class. Classes are the sorted labels of all csv files given, so
    train and val lists share indices. Returns (classes, {split name: rows}).
    """
    entries = []
    for path in csv_paths:
        path = Path(path)
        if not path.is_file():
            raise MGMError(f"{path}: csv file not found")
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            need = {"label", "youtube_id", "time_start", "time_end"}
            if not reader.fieldnames or not need <= set(reader.fieldnames):
                raise MGMError(f"{path}: header must contain {sorted(need)}, got {reader.fieldnames}")
            for row in reader:
                try:
                    name = f"{row['youtube_id']}_{int(float(row['time_start'])):06d}_{int(float(row['time_end'])):06d}{ext}"
                except (TypeError, ValueError):
                    raise MGMError(f"{path}:{reader.line_num}: bad time_start/time_end in {row}") from None
                split = row.get("split") or path.stem
                entries.append((split, row["label"], name))
    names = sorted({label for _, label, _ in entries})
    idx = {n: i for i, n in enumerate(names)}
    out: dict[str, list] = {}
    for split, label, name in entries:
        out.setdefault(split, []).append((f"{label}/{name}" if by_class else name, idx[label]))
    return names, out


def _with_ext(path: str, ext: str | None) -> str:
    """Swap the extension (e.g. .avi -> .mp4 after transcoding); keep it when ext is None."""
    return path if ext is None else os.path.splitext(path)[0] + ext


def filter_existing(rows, root):
    """Split rows into (present, missing) by whether root/path exists."""
    present, missing = [], []
    for path, label in rows:
        (present if os.path.exists(os.path.join(root, path)) else missing).append((path, label))
    return present, missing
