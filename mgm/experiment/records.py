"""The experiment's stored records, typed: what one unit of work leaves in OUT/results/*.json.

Three kinds, told apart by their fields as the JSON has always been (no kind field was ever stored,
so every older file still loads):

    Pretraining  {"arm", "seed", "checkpoints", "final_loss", "loss_curve", "seconds"}
    FineTune     {"tag", "variant", "fraction", "seed", "top1", "top5", "epochs", "seconds"}
    Probe        {"tag", "seed", "mean", "slots", "seconds"}   (the motion-map probe: tag, mean)

A `Tag` names what was fine-tuned or probed: an arm's checkpoint at a pre-training step
("mgm-0.75@1344") or a baseline without one ("scratch", "untrained", "motion-maps").
`to_dict` writes the same JSON the runner always wrote; keys this module does not know (e.g. the
"key" of the record lists under docs/results/) are kept in `extra` and written back.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import ClassVar, Union


@dataclass(frozen=True, order=True)
class Tag:
    """What a fine-tune or probe started from: `arm` at pre-training step `step` (None: a baseline)."""

    arm: str
    step: int | None = None

    @classmethod
    def parse(cls, text: str) -> "Tag":
        """'mgm-0.75@1344' -> Tag('mgm-0.75', 1344); 'scratch' -> Tag('scratch')."""
        arm, _, step = text.partition("@")
        return cls(arm, int(step) if step else None)

    def __str__(self) -> str:
        return self.arm if self.step is None else f"{self.arm}@{self.step}"


@dataclass(frozen=True)
class _Record:
    extra: dict = field(default_factory=dict, compare=False, repr=False, kw_only=True)

    # Fields written even when None (a fine-tune that never evaluated stores "top1": null).
    _ALWAYS: ClassVar[tuple] = ()

    @classmethod
    def from_dict(cls, d: dict):
        names = {f.name for f in fields(cls)} - {"extra"}
        kw = {k: v for k, v in d.items() if k in names}
        if "tag" in kw:
            kw["tag"] = Tag.parse(kw["tag"])
        return cls(**kw, extra={k: v for k, v in d.items() if k not in names})

    def to_dict(self) -> dict:
        """The record's JSON form (as the runner has always written it)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "extra" or (value is None and f.default is None and f.name not in self._ALWAYS):
                continue
            out[f.name] = str(value) if isinstance(value, Tag) else value
        return {**out, **self.extra}


@dataclass(frozen=True)
class Pretraining(_Record):
    """One arm's pre-training: its checkpoints {step (str): path} at the curve's points."""

    arm: str = ""
    seed: int = 0
    final_loss: float | None = None
    loss_curve: list | None = None                  # [(step, training loss)]
    checkpoints: dict = field(default_factory=dict)
    seconds: float | None = None
    reused_from: str | None = None                  # the experiment folder it was taken from


@dataclass(frozen=True)
class FineTune(_Record):
    """One fine-tune of `tag` on `fraction` of the labels of the `variant` benchmark."""

    tag: Tag = Tag("scratch")
    variant: str = "base"
    fraction: float = 1.0
    seed: int = 0
    top1: float | None = None
    top5: float | None = None
    epochs: int | None = None
    seconds: float | None = None
    _ALWAYS: ClassVar[tuple] = ("top1", "top5")


@dataclass(frozen=True)
class Probe(_Record):
    """Linear probes on frozen features of `tag`: top-1 with mean-pooled and per-slot features."""

    tag: Tag = Tag("untrained")
    seed: int | None = None
    mean: float | None = None
    slots: float | None = None
    seconds: float | None = None
    reused_from: str | None = None


Record = Union[Pretraining, FineTune, Probe]


def record_from_dict(d: dict) -> Record:
    """The record a stored dict is, by its fields; ValueError naming what is missing otherwise."""
    if not isinstance(d, dict):
        raise ValueError(f"a record is a JSON object, not {type(d).__name__}")
    if "checkpoints" in d:
        return Pretraining.from_dict(d)
    if "fraction" in d and "tag" in d:
        return FineTune.from_dict(d)
    if "mean" in d and "tag" in d:
        return Probe.from_dict(d)
    raise ValueError("neither a pre-training (checkpoints), a fine-tune (tag, fraction) nor a probe (tag, mean)")


def as_record(r: Record | dict) -> Record:
    """A record, or its stored dict form read as one."""
    return r if isinstance(r, _Record) else record_from_dict(r)
