"""The runner: turns a preset into units of work (pre-trainings, fine-tunes, probes), runs those not
stored yet, and shares one folder with other runners through per-unit claims."""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from mgm.errors import MGMError, Stopped
from mgm.experiment.probe import encoder_features, linear_probe, motion_features
from mgm.experiment.recipes import Arm, Preset
from mgm.experiment.records import FineTune, Pretraining, Probe, Record, Tag
from mgm.experiment.report import plot_curves, summarise
from mgm.experiment.store import (_num_clips, _read_recipe, _recipe_diff, finetune_run_name, prepare_data,
                                  read_result, read_results, run_losses, train_list, write_result)
from mgm.files import write_text


class Runner:
    """Runs (or skips, when its result exists) every unit of work of one preset."""

    # Preset fields that change what a stored result means; the others only choose which runs exist.
    # `curve` only picks which of the per-epoch pre-training checkpoints get fine-tuned.
    _SELECTION = ("arms", "seeds", "label_fractions", "curve", "curve_labels", "probe", "transfer", "scratch",
                  "full_arms", "threads", "keep_every_epoch")

    # Recipe names that decide what a pre-training is: another folder's pre-trainings are reused
    # (`pretrained`) only when these agree (and any other "pretrain.*" override), e.g. to try
    # another fine-tuning recipe on them.
    _PRETRAINING = ("synth", "num_frames", "stride", "size", "tubelet", "patch", "model", "pretrain_steps",
                    "pretrain_batch", "pretrain_lr", "norm_pix")

    def __init__(self, out: str | Path, preset: Preset, *, verbose: bool = False, data: str | Path | None = None,
                 pretrained: str | Path | None = None):
        self.out, self.preset, self.verbose = Path(out), preset, verbose
        self.pretrained = Path(pretrained) if pretrained else None
        if self.pretrained:
            self._check_pretrained()
        # the pre-trainings' own clips unless told otherwise
        self.data = Path(data) if data else (self.pretrained or self.out) / "data"
        (self.out / "results").mkdir(parents=True, exist_ok=True)
        self.roots: dict[str, Path] = {}
        self._claims: list[Path] = []
        self._check_recipe()

    def _check_pretrained(self) -> None:
        path = self.pretrained / "recipe.json"
        if not path.exists():
            raise MGMError(f"{self.pretrained}: not an experiment folder (no recipe.json) to take pre-trainings from")
        theirs = _read_recipe(path)
        others = sorted(k for k in set(theirs) | set(self.preset.record()) if k.startswith("pretrain."))
        diff = _recipe_diff(theirs, self.preset, self._PRETRAINING + tuple(others))
        # frozen-encoder probes depend on nothing else but the split they are scored on
        self._probes_reusable = not _recipe_diff(theirs, self.preset, ["eval_split"])
        if diff:
            raise MGMError(f"{self.pretrained}: its pre-trainings differ from this recipe's in "
                           f"{', '.join(diff)}; they cannot be reused")

    def _check_recipe(self) -> None:
        """Results are reused across calls, so a folder holds one recipe: refuse to mix two."""
        recipe = {k: v for k, v in self.preset.record().items() if k not in self._SELECTION}
        path = self.out / "recipe.json"
        if path.exists():
            old = _read_recipe(path)
            diff = _recipe_diff(old, self.preset, sorted(k for k in set(old) | set(recipe) if k not in self._SELECTION))
            if diff:
                raise MGMError(f"{self.out}: holds results of another recipe (differs in {', '.join(diff)}); "
                               "choose another --out")
        else:
            write_text(path, json.dumps(recipe, indent=1))

    # -- bookkeeping
    def _result_path(self, key: str) -> Path:
        return self.out / "results" / (key.replace("/", "__") + ".json")

    def done(self, key: str) -> bool:
        return self._result_path(key).exists()

    def result(self, key: str) -> Record | None:
        p = self._result_path(key)
        return read_result(p) if p.exists() else None

    def claim(self, unit: tuple) -> bool:
        """Take `unit` for this process, so that several runners (one per core or GPU) can share
        one folder: False while another live process holds it. A claim of a dead process is stale."""
        path = self.out / "results" / ("claim-" + _unit_key(unit) + ".pid")
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                try:
                    pid = int(path.read_text() or 0)
                except (OSError, ValueError):
                    pid = 0
                if pid == os.getpid():
                    return True
                if pid and _alive(pid):
                    return False
                path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            self._claims.append(path)
            return True
        return False

    def release_claims(self) -> None:
        for path in self._claims:
            path.unlink(missing_ok=True)
        self._claims = []

    def _store(self, key: str, record: Record) -> Record:
        return write_result(self._result_path(key), record)

    # -- configs
    def _config(self, command: str, name: str, data_root: Path, tlist: Path, seed: int, **sections):
        """The training config of one run: the preset's geometry and data, the run's own `sections`,
        then the stage's overrides (the preset's `pretrain` / `finetune` dict) on top."""
        from mgm.train.config import load_config

        p, g = self.preset, self.preset.geometry
        base = {
            "model": {"preset": p.model, **sections.pop("model", {})},
            "data": {"train_list": str(tlist), "val_list": str(data_root / f"{p.eval_split}.txt"),
                     "root": str(data_root), "num_frames": g.num_frames, "size": g.size, "tubelet": g.tubelet,
                     "patch": g.patch, "stride": p.stride, "in_memory": True,
                     "cache": str(data_root / "cache"), **sections.pop("data", {})},
            "optim": sections.pop("optim", {}),
            "run": {"name": name, "out_dir": str(self.out / "runs"), "seed": seed,
                    "progress": self.verbose, "threads": p.threads, "eval_every": 0,
                    **sections.pop("run", {})},
        }
        for key, value in (p.pretrain if command == "pretrain" else p.finetune).items():
            section, field = key.split(".")
            base[section][field] = value
        return load_config(command, base=base)

    def pretrain(self, arm: Arm, seed: int) -> Pretraining:
        """Pre-train one arm, keeping every epoch's checkpoint (or, with `keep_every_epoch` off, only
        the curve's). Its record's checkpoints are {step: path} at the `curve` points: each fraction is
        rounded to the nearest epoch end (the last to the last step), so a new curve reuses a
        finished pre-training."""
        from mgm.train.checkpoint import checkpoint_path, list_checkpoints

        key = f"pretrain/{arm.name}/s{seed}"
        p = self.preset
        root = self.roots["base"]
        per_epoch = max(1, _num_clips(root / "train.txt") // p.pretrain["data.batch_size"])
        steps = sorted({p.pretrain_steps if f >= 1 else
                        min(p.pretrain_steps, per_epoch * max(1, round(f * p.pretrain_steps / per_epoch)))
                        for f in p.curve})
        run_dir = self.out / "runs" / f"pretrain-{arm.name}-s{seed}"
        ckpts = {str(s): str(checkpoint_path(run_dir, s)) for s in steps}
        if not self.done(key):
            self._reuse(key, run_dir)
        if self.done(key):
            res = self.result(key)
            missing = [c for c in ckpts.values() if not os.path.exists(c)]
            if missing:
                raise MGMError(f"{missing[0]}: checkpoint of the finished pre-training {arm.name} s{seed} "
                               f"is gone; delete {self._result_path(key)} to pre-train again")
            return res if res.checkpoints == ckpts else self._store(key, replace(res, checkpoints=ckpts))
        from mgm.train.tasks import run_training

        epochs = -(-p.pretrain_steps // per_epoch)
        cfg = self._config("pretrain", run_dir.name, root, root / "train.txt", seed,
                           data={"mask": arm.strategy, "mask_ratio": arm.ratio, "mask_params": dict(arm.params)},
                           optim={"epochs": epochs, "max_steps": p.pretrain_steps, "warmup_epochs": 0.1 * epochs},
                           # without every epoch: the curve's checkpoints and the newest two (resume)
                           run={"ckpt_every": 0, "keep_ckpts": 10 ** 6 if p.keep_every_epoch else 2,
                                "keep_steps": steps, "resume": "auto"})
        t = time.perf_counter()
        out = _trained(run_training("pretrain", cfg), f"pre-training {arm.name} s{seed}",
                       f"its checkpoint in {run_dir} is kept; the next run continues it")
        for path in [] if p.keep_every_epoch else list_checkpoints(run_dir):
            if str(path) not in ckpts.values():  # finished: only the curve's are used
                path.unlink()
        missing = [c for c in ckpts.values() if not os.path.exists(c)]
        if missing:
            raise MGMError(f"pre-training {arm.name} left no checkpoint {missing[0]}")
        return self._store(key, Pretraining(arm=arm.name, seed=seed, final_loss=out["loss"],
                                            loss_curve=run_losses(cfg.run_dir), checkpoints=ckpts,
                                            seconds=round(time.perf_counter() - t, 1)))

    def _reuse(self, key: str, run_dir: Path | None = None) -> bool:
        """Take `key` (a pre-training, or a probe when both folders score the same split) from the
        `pretrained` folder if it finished there: a pre-training's run folder is linked (the
        checkpoints stay where they are; pretrain() checks them) and the result copied."""
        if self.pretrained is None or (run_dir is None and not self._probes_reusable):
            return False
        src = self.pretrained / "results" / self._result_path(key).name
        theirs = self.pretrained / "runs" / run_dir.name if run_dir else None
        if not src.exists() or (theirs is not None and not theirs.is_dir()):
            return False
        if run_dir is not None and not run_dir.exists():
            run_dir.parent.mkdir(parents=True, exist_ok=True)
            run_dir.symlink_to(theirs.resolve(), target_is_directory=True)
        self._store(key, replace(read_result(src), reused_from=str(self.pretrained)))
        return True

    def finetune(self, tag: str, init: str | None, frac: float, seed: int, variant: str = "base") -> FineTune:
        """Fine-tune from `init` (None: from scratch) on `frac` of the labels."""
        key = f"finetune/{variant}/{tag}/f{frac:g}/s{seed}"
        if self.done(key):
            return self.result(key)
        from mgm.train.tasks import run_training

        p = self.preset
        root = self.roots[variant]
        # Same number of optimizer steps for every label fraction: few labels, more epochs.
        tlist = train_list(root, frac)
        per_epoch = max(1, _num_clips(tlist) // p.finetune["data.batch_size"])
        epochs = -(-p.finetune_steps // per_epoch)
        cfg = self._config("finetune", finetune_run_name(tag, frac, seed, variant), root,
                           tlist, seed, model={"init": init or ""},
                           optim={"epochs": epochs, "max_steps": p.finetune_steps, "warmup_epochs": 0.1 * epochs},
                           # a unit whose result is not stored is unfinished: it starts again
                           run={"keep_ckpts": 1, "overwrite": True})
        t = time.perf_counter()
        out = _trained(run_training("finetune", cfg), f"fine-tuning {tag} on {frac:g} of the labels s{seed}",
                       "it starts again on the next run")
        ev = out["eval"] or {}
        return self._store(key, FineTune(tag=Tag.parse(tag), variant=variant, fraction=frac, seed=seed,
                                         top1=ev.get("top1"), top5=ev.get("top5"), epochs=epochs,
                                         seconds=round(time.perf_counter() - t, 1)))

    def probe(self, tag: str, init: str | None, seed: int) -> Probe:
        """Linear probes on frozen features: mean-pooled and per time slot."""
        key = f"probe/{tag}/s{seed}"
        if self.done(key) or self._reuse(key):
            return self.result(key)

        t = time.perf_counter()
        train, test = self.memory_splits()
        feats = {which: encoder_features(self._probe_model(init, seed), split)
                 for which, split in (("train", train), ("test", test))}
        acc = {pooling: linear_probe(feats["train"][pooling], train.labels(), feats["test"][pooling], test.labels())
               for pooling in ("mean", "slots")}
        return self._store(key, Probe(tag=Tag.parse(tag), seed=seed, **acc, seconds=round(time.perf_counter() - t, 1)))

    def motion_probe(self) -> Probe:
        """A linear probe on the codec's motion maps (camera motion removed): nothing learned."""
        key = "probe/motion-maps"
        if self.done(key) or self._reuse(key):
            return self.result(key)

        train, test = self.memory_splits()
        acc = linear_probe(motion_features(train), train.labels(), motion_features(test), test.labels())
        return self._store(key, Probe(tag=Tag("motion-maps"), mean=acc))

    def memory_splits(self):
        """[train, evaluation split] of the base benchmark as centred, unmasked MemoryClips (decoded
        once, cached under the data folder): what the probes and the demo's pictures read."""
        from mgm.data.memory import MemoryClips, decode_split

        p, root = self.preset, self.roots["base"]
        splits = [decode_split(str(root / name), root=str(root), progress=self.verbose,
                               cache=str(root / "cache" / Path(name).stem), size=p.geometry.size)
                  for name in ("train.txt", f"{p.eval_split}.txt")]
        return [MemoryClips(s, p.geometry, p.stride, train=False) for s in splits]

    def _probe_model(self, init: str | None, seed: int):
        import torch

        from mgm.interop import load_encoder_weights
        from mgm.model import ModelConfig, VideoMAEClassifier
        from mgm.train.tasks import state_dict_of

        p = self.preset
        torch.manual_seed(seed)
        model = VideoMAEClassifier(ModelConfig.from_preset(p.model, geometry=p.geometry, num_classes=1))
        if init:
            load_encoder_weights(model, state_dict_of(init))
        return model.eval()

    # -- the whole experiment
    def units(self) -> list[tuple]:
        """Every unit of work in order: ("pretrain", arm, seed) / ("finetune", ...) / ("probe", ...)."""
        p, units = self.preset, []
        for seed in p.seeds:
            if p.scratch:
                for frac in p.label_fractions:
                    units.append(("finetune", "scratch", None, frac, seed, "base"))
            if p.probe:
                units.append(("probe", "untrained", None, seed))
            if p.transfer and p.scratch:
                units.append(("finetune", "scratch", None, p.curve_labels, seed, "shifted"))
            for arm in p.arms:
                units.append(("pretrain", arm, seed))
        if p.probe:
            units.append(("motion_probe",))
        return units

    def run(self) -> dict:
        from tqdm import tqdm

        p = self.preset
        self.roots = prepare_data(self.data, p)  # minutes the first time: always with a progress bar
        todo = self.units()
        bar = tqdm(todo, desc="experiment", unit="run")
        try:
            for unit in bar:
                bar.set_postfix_str(" ".join(_unit_parts(unit[1:3])))
                if not self.claim(unit):
                    bar.write(f"skipped (another runner has it): {_unit_key(unit)}")
                    continue
                with self._run_output():
                    self._run_unit(unit)
                self.release_claims()  # done: its result file now tells every runner to skip it
                bar.write(self.summary_line())
        finally:
            self.release_claims()
        return self.report()

    def _run_output(self):
        """Where the training runs' own lines go: the terminal with --verbose, else OUT/runs/output.log
        (the terminal keeps the experiment's bar and running table; each run also logs log.jsonl)."""
        import contextlib

        if self.verbose:
            return contextlib.nullcontext()
        stack = contextlib.ExitStack()
        (self.out / "runs").mkdir(exist_ok=True)
        stream = stack.enter_context(open(self.out / "runs" / "output.log", "a"))
        stack.enter_context(contextlib.redirect_stdout(stream))
        return stack

    def _run_unit(self, unit: tuple) -> None:
        """One unit of `units()`; a pre-training unit also fine-tunes and probes its checkpoints."""
        p, kind = self.preset, unit[0]
        if kind == "pretrain":
            _, arm, seed = unit
            pre = self.pretrain(arm, seed)
            final = max(pre.checkpoints, key=int)
            full = p.full_arms is None or arm.name in p.full_arms
            for step, ckpt in sorted(pre.checkpoints.items(), key=lambda kv: int(kv[0])):
                tag = f"{arm.name}@{step}"
                fracs = p.label_fractions if step == final and full else (p.curve_labels,)
                if step == final or full:
                    for frac in fracs:
                        self.finetune(tag, ckpt, frac, seed)
            if p.probe and full:
                self.probe(f"{arm.name}@{final}", pre.checkpoints[final], seed)
            if p.transfer and full:
                self.finetune(f"{arm.name}@{final}", pre.checkpoints[final], p.curve_labels,
                              seed, "shifted")
        elif kind == "finetune":
            self.finetune(*unit[1:])
        elif kind == "probe":
            self.probe(*unit[1:])
        else:
            self.motion_probe()

    # -- reporting
    def all_results(self) -> list[Record]:
        return read_results(self.out)

    def summary_line(self) -> str:
        rows = [r for r in self.all_results() if isinstance(r, FineTune) and r.variant == "base"
                and r.fraction == self.preset.curve_labels and r.top1 is not None]
        by = {}
        for r in rows:
            by.setdefault(r.tag.arm, []).append(r.top1)
        return "top-1 so far (" + f"{self.preset.curve_labels:g} labels): " + " | ".join(
            f"{k} {np.mean(v):.1f}" for k, v in sorted(by.items()))

    def report(self) -> dict:
        p = self.preset
        summary = summarise(self.all_results(), p.curve_labels)
        write_text(self.out / "summary.json", json.dumps(summary, indent=1))
        write_text(self.out / "results.md", summary["markdown"] + "\n")
        scratch = summary["finetune"].get(f"base|scratch|None|{p.curve_labels}")
        if len(p.curve) > 1:  # one point per arm is no curve (the demo's was a 3-step-wide axis)
            plot_curves(summary, float(np.mean(scratch)) if scratch else None,
                        str(self.out / "curve.png"), p.curve_labels)
        return summary


def _unit_parts(unit: tuple) -> list[str]:
    return [str(u.name if isinstance(u, Arm) else u) for u in unit]


def _unit_key(unit: tuple) -> str:
    return "-".join(_unit_parts(unit)).replace("/", "_")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _trained(out: dict, what: str, then: str) -> dict:
    """A training run's result, or Stopped when a stop signal ended it early: then it is no finished
    unit (storing it would record a fine-tune without a score, and the pre-training's clean-up would
    delete the checkpoint the stop just wrote)."""
    if out.get("stopped"):
        raise Stopped(out["stopped"], f"{out['stopped']} received: {what} stopped at step {out['step']} ({then}); "
                                      f"the finished units are stored: run the same command again to go on")
    return out
