"""Summaries of the masking experiment: tables (mean ± std over seeds), the headline differences,
and the accuracy-against-pre-training-steps plot. Every "std" is the sample standard deviation over
seeds (n − 1), the same spread the 95% intervals are built from."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from mgm.experiment.recipes import Arm
from mgm.experiment.records import FineTune, Probe, Record, as_record
from mgm.files import atomic_write


def _labels(fraction: float) -> str:
    return "all labels" if fraction >= 1 else f"{fraction:.0%} of labels"


def seed_std(values) -> float:
    """Sample standard deviation (n - 1) of per-seed values; 0 for a single seed. With 2-4 seeds the
    population std (n) would understate it by 13-29%, next to intervals that use n - 1."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def _ms(values) -> str:
    v = [x for x in values if x is not None]
    if not v:
        return "—"
    # (n): the number of seeds, as rows of one experiment may have different counts (ablation arms)
    return f"{np.mean(v):.1f} ± {seed_std(v):.1f} ({len(v)})" if len(v) > 1 else f"{v[0]:.1f} (1)"


def summarise(results: list[Record | dict], curve_labels: float) -> dict:
    """results: the experiment's records (mgm.experiment.records; a dict is read as its stored JSON
    form); curve_labels: the label fraction of the curve's (and the transfer's) fine-tunes.
    Returns {"finetune": rows, "probe": rows,
    "headline": {ratio: MGM vs tube}, "versus_tube": {other arm: the same vs tube at its ratio},
    "curve": {arm: [(step, mean, std)]}, "markdown": str}."""
    ft = defaultdict(list)   # (variant, arm, step, fraction) -> [top1 per seed]
    by_seed = {}             # (variant, arm, step, fraction, seed) -> top1
    results = [as_record(r) for r in results]
    for r in results:
        if isinstance(r, FineTune) and r.top1 is not None:
            k = (r.variant, r.tag.arm, r.tag.step, r.fraction)
            ft[k].append(r.top1)
            by_seed[k + (r.seed,)] = r.top1
    probes = defaultdict(lambda: defaultdict(list))
    for r in results:
        if isinstance(r, Probe):
            for pooling in ("mean", "slots"):
                if getattr(r, pooling) is not None:
                    probes[r.tag.arm][pooling].append(getattr(r, pooling))

    final_step = {arm: max(s for (v, a, s, f) in ft if a == arm and s is not None)
                  for (_, arm, step, _) in ft if step is not None}
    fracs = sorted({f for (_, _, _, f) in ft}, reverse=True)
    arms = sorted(final_step, key=lambda a: (a.split("-")[0] != "tube", a))

    lines = ["| pre-training | " + " | ".join(f"fine-tune top-1, {_labels(f)} (seeds)" for f in fracs)
             + " | transfer (shifted) |", "|---|" + "---|" * (len(fracs) + 1)]
    for arm in ["scratch"] + arms:
        step = final_step.get(arm)
        cells = [_ms(ft.get(("base", arm, step, f), [])) for f in fracs]
        tr = _ms(ft.get(("shifted", arm, step, curve_labels), []))
        lines.append(f"| {arm}{'' if step is None else f' ({step} steps)'} | " + " | ".join(cells)
                     + f" | {tr} |")
    table = "\n".join(lines)

    plines = ["| features | linear probe, mean-pooled | linear probe, per time slot |", "|---|---|---|"]
    for arm in ["motion-maps", "untrained"] + arms:
        if arm in probes:
            plines.append(f"| {arm} | {_ms(probes[arm]['mean'])} | {_ms(probes[arm].get('slots', []))} |")
    probe_table = "\n".join(plines)

    # Per seed: which runs stayed at chance is what decides the means at this size.
    seeds = sorted({k[-1] for k in by_seed})  # every seed run, also beyond the preset's
    runs = sorted({(a, s) for (v, a, s, f, _) in by_seed if v == "base" and f == curve_labels},
                  key=lambda r: (r[0] != "scratch", r[0].split("-")[0] != "tube", r[0], r[1] or 0))
    slines = [f"| fine-tuned, {_labels(curve_labels)} | " + " | ".join(f"seed {s}" for s in seeds) + " |",
              "|---|" + "---|" * len(seeds)]
    for a, st in runs:
        cells = [by_seed.get(("base", a, st, curve_labels, s)) for s in seeds]
        slines.append(f"| {a}{'' if st is None else f', {st} steps'} | "
                      + " | ".join("—" if c is None else f"{c:.1f}" for c in cells) + " |")
    seed_table = "\n".join(slines)

    # The curve of an arm uses the seeds that have every one of its points (a seed run with the
    # final checkpoint only counts in the table, not here), so that its points compare like with like.
    def curve_of(arm: str, among=None) -> tuple[list, set]:
        """[(step, mean, std)] over the arm's complete seeds (those in `among`, if given), and those seeds."""
        runs = {(s, seed): v for (var, a, s, f, seed), v in by_seed.items()
                if var == "base" and a == arm and f == curve_labels and (among is None or seed in among)}
        steps = sorted({s for s, _ in runs})
        seeds = [seed for seed in sorted({seed for _, seed in runs}) if all((s, seed) in runs for s in steps)]
        return ([(int(s), float(np.mean([runs[s, seed] for seed in seeds])),
                  seed_std([runs[s, seed] for seed in seeds])) for s in steps] if seeds else []), set(seeds)

    complete = {arm: curve_of(arm) for arm in arms}  # arm -> (curve, its complete seeds)
    curve = {arm: c for arm, (c, _) in complete.items()}

    def paired(a: str, b: str, f: float, variant: str = "base") -> list:
        """a - b top-1 per seed where both exist (b = "scratch" has no step)."""
        ka, kb = (variant, a, final_step.get(a), f), (variant, b, final_step.get(b), f)
        return [by_seed[ka + (s,)] - by_seed[kb + (s,)] for s in seeds
                if ka + (s,) in by_seed and kb + (s,) in by_seed]

    # The conditions every difference is reported for: each label fraction on the base benchmark,
    # and the transfer fine-tunes. (text, label fraction, variant, headline key)
    conditions = [(_labels(f), f, "base", f"mgm_minus_tube_f{f:g}") for f in fracs]
    conditions.append(("transfer to the shifted variant", curve_labels, "shifted", "transfer_mgm_minus_tube"))

    # Every masking arm against tube at its ratio: `mgm-R` is the headline; the others (MGM's
    # settings, motion-topk, ...) are compared the same way, paired by seed.
    headline, versus_tube, diffs_of = {}, {}, {}  # ratio -> summary; arm -> summary; (arm, text) -> diffs

    for arm in arms:
        a = Arm.from_name(arm)  # strategies may have a hyphen: motion-topk-0.75
        ratio, tube = f"{a.ratio:g}", Arm("tube", a.ratio).name
        if a.strategy == "tube" or tube not in final_step:
            continue
        h = {}
        for text, f, variant, key in conditions:
            diffs = paired(arm, tube, f, variant)
            if diffs:
                diffs_of[arm, text] = diffs
                h[key] = (float(np.mean(diffs)), seed_std(diffs), len(diffs))
                h[key + "_ci95"] = _ci95(diffs)
        # on the seeds both curves have: another seed's luck would move the target
        common = complete[arm][1] & complete[tube][1]
        # the final checkpoint alone says nothing about fewer steps: None, not 1.0
        arm_curve = curve_of(arm, common)[0]
        h["steps_fraction_to_match_tube"] = (_steps_to_reach(arm_curve, curve_of(tube, common)[0])
                                             if len(arm_curve) >= 2 else None)
        if arm == f"mgm-{ratio}":
            headline[ratio] = h
        else:  # keys without "mgm_": the arm may be another strategy
            versus_tube[arm] = {k.replace("mgm_minus", "minus"): v for k, v in h.items()}

    md = [table, ""] + ([probe_table, ""] if probes else []) + [seed_table, ""]
    for arm in arms:
        for text, f, variant, _ in conditions:
            d = paired(arm, "scratch", f, variant)
            if d:
                md.append(f"- {arm} − scratch, {text}: {_diff_text(d)}")
    named = [(f"mgm-{r}", f"ratio {r}: MGM", h) for r, h in headline.items()]
    named += [(arm, f"{arm}", h) for arm, h in versus_tube.items()]
    for arm, name, h in named:
        for text, *_ in conditions:
            if (arm, text) in diffs_of:
                md.append(f"- {name} − tube, {text}: {_diff_text(diffs_of[arm, text])}")
        frac = h["steps_fraction_to_match_tube"]
        if len(curve.get(arm, [])) < 2:  # see steps_fraction_to_match_tube above
            continue
        md.append(f"- {name} reaches tube's final accuracy ({_labels(curve_labels)}) "
                  + (f"with {100 * frac:.0f}% of the pre-training steps" if frac is not None
                     else "at none of the checkpoints"))
    return {"finetune": {"|".join(map(str, k)): v for k, v in ft.items()},
            "probe": {k: dict(v) for k, v in probes.items()}, "headline": headline, "versus_tube": versus_tube,
            "curve": curve,
            "markdown": "\n".join(md)}


# Two-sided 95% Student t quantiles by degrees of freedom (up to 31 seeds: no scipy needed; beyond,
# the normal 1.96 is within 4%).
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
        10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110,
        18: 2.101, 19: 2.093, 20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060,
        26: 2.056, 27: 2.052, 28: 2.048, 29: 2.045, 30: 2.042}


def _ci95(diffs: list) -> tuple[float, float] | None:
    """95% confidence interval of the mean of paired per-seed differences (t, n - 1 df); None if n < 2."""
    n = len(diffs)
    if n < 2:
        return None
    half = _T95.get(n - 1, 1.96) * seed_std(diffs) / np.sqrt(n)
    return float(np.mean(diffs)) - half, float(np.mean(diffs)) + half


def _diff_text(diffs: list) -> str:
    ci = _ci95(diffs)
    if ci is None:  # one seed: no spread to show
        return f"{diffs[0]:+.1f} points (1 seed)"
    return f"{np.mean(diffs):+.1f} ± {seed_std(diffs):.1f} points ({len(diffs)} seeds; 95% CI {ci[0]:+.1f} to {ci[1]:+.1f})"


def _steps_to_reach(mgm: list, tube: list) -> float | None:
    """Smallest fraction of tube's final step at which MGM's curve (linearly interpolated, from 0)
    reaches tube's final mean accuracy; None if it never does."""
    if not mgm or not tube:
        return None
    target, last = tube[-1][1], tube[-1][0]
    prev_s, prev_a = 0, None
    for s, a, _ in mgm:
        if a >= target:
            if prev_a is None or a == prev_a:
                return s / last
            return (prev_s + (target - prev_a) / (a - prev_a) * (s - prev_s)) / last
        prev_s, prev_a = s, a
    return None


def plot_curves(summary: dict, scratch: float | None, path: str, labels: float) -> None:
    """top-1 against pre-training steps, one line per arm (mean, std as error bars), scratch as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    arms = [(arm, pts) for arm, pts in summary["curve"].items() if pts]
    # Arms share their steps: dodge each a little sideways, so equal means (e.g. two final-only arms)
    # stay visible, and draw std as error bars (a band is invisible for an arm with one point).
    width = max((s for _, pts in arms for s, _, _ in pts), default=1) * 0.012
    for i, (arm, pts) in enumerate(arms):
        s, m, sd = map(np.array, zip(*pts))
        ax.errorbar(s + (i - (len(arms) - 1) / 2) * width, m, yerr=sd, marker="o", capsize=3, label=arm)
    if scratch is not None:
        ax.axhline(scratch, color="grey", linestyle="--", label="scratch")
    ax.set_xlabel("pre-training steps")
    ax.set_ylabel(f"fine-tune top-1 (%), {_labels(labels)}")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # nothing finished yet: an empty plot, no legend
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))  # outside: hides no point
    fig.tight_layout()
    with atomic_write(path) as f:
        fig.savefig(f, format=Path(path).suffix.lstrip(".") or "png")
    plt.close(fig)
