"""The suite's section of RESULTS.md: verdicts per claim, tables, coverage."""

import json
import math
import pathlib

from benchmarks.suite import SUITES

TIME_THRESHOLD = 1.10  # "negligible": at most 10% more time per epoch
UNTUNED = ("plateau", "noise")
CLAIM_RULE = (
    "Two compiled programs differ even when SAL never fires: its gate changes "
    "XLA's fusion, so SAL's run and the baseline's part at rounding level from "
    "the first step. The *noise floor* is therefore measured from the data: the "
    "95th percentile of |SAL − baseline| (test accuracy at the best-validation "
    "epoch, points) over the (cell, seed) runs where SAL made no deformation. "
    "Each claim about SAL's effect is judged only on the runs where SAL deformed "
    "the model (elastic + plastic > 0): it is *confirmed* when the 95% bootstrap "
    "interval of the mean paired difference (SAL minus the peer, pooled over the "
    "cells and seeds named) lies above the floor, *refuted* when it lies below "
    "minus the floor, *not confirmed* otherwise (always so when a single run "
    "deformed: one run gives no interval), and *not measurable here* when SAL "
    "deformed the model in none of those runs."
)


def judge(low: float, high: float, floor: float) -> str:
    """Verdict word of an interval against the noise floor (nan counts as 0)."""
    floor = 0.0 if floor != floor else floor
    if low > floor:
        return "confirmed"
    if high < -floor:
        return "refuted"
    return "not confirmed"


def floor_text(floor: tuple[float, int]) -> str:
    """The floor as the report states it."""
    value, runs = floor
    if runs == 0:
        return (
            "Noise floor here: not measurable (SAL deformed the model in every run "
            "paired with the baseline); claims are judged against 0."
        )
    return (
        f"Noise floor here: **{value:.2f} points**, the 95th percentile of "
        f"|SAL − baseline| over the {runs} runs where SAL made no deformation."
    )


def _claim(
    pooled: dict, deformed: dict, floor: tuple[float, int], peer: str, regime
) -> tuple[str, str]:
    if (peer, regime) not in pooled:
        return "not measurable here", "no paired runs"
    mean, low, high, wtl = pooled[(peer, regime)]
    every = f"all runs: {mean:+.2f} [{low:+.2f}, {high:+.2f}], W/T/L {wtl}"
    d_mean, d_low, d_high, active, runs = deformed[(peer, regime)]
    if active == 0:
        word = "not measurable here (SAL never triggered)"
        evidence = f"SAL deformed the model in 0 of {runs} runs; {every}"
    else:
        # One run gives a point, not an interval: nothing to judge it with.
        word = judge(d_low, d_high, floor[0]) if active > 1 else "not confirmed"
        evidence = (
            f"on the {active} of {runs} runs where SAL deformed the model, SAL − "
            f"{peer} = {d_mean:+.2f} points [{d_low:+.2f}, {d_high:+.2f}] "
            f"(floor ±{floor[0]:.2f}); {every}"
        )
    if peer in UNTUNED:
        # Methods: the peers run fixed settings, untuned, and a gap
        # can be the peer's own collapse rather than SAL's merit.
        evidence += (
            f"; this compares against an untuned `{peer}` ("
            + (
                "the rate halved after 2 epochs without a 1e-4 relative gain"
                if peer == "plateau"
                else "gradient noise that Adam's normalization inflates"
            )
            + "), so a gap can be the peer's own collapse"
        )
    return word, evidence


DESIGN = """\
- **Same budget.** Every method trains the same number of epochs, with the
  same descent steps on the same batches in the same order (seeded), from the
  same initialization; the seed also fixes the label noise, so runs are paired
  across methods.
- **SAM** (`optax.contrib.sam`, default non-opaque mode, `sync_period=2`,
  rho 0.05) sees each batch twice, ascent then descent, so it makes as many
  descent steps as the others and pays one extra gradient per batch (2× the
  gradient evaluations). BatchNorm statistics move on both calls.
- **SAL** is judged once per epoch (`accumulation_steps` = steps per epoch) on
  the mean training loss and the validation accuracy, which costs one
  validation pass per epoch; `sal` puts it last in the chain (the paper's
  mechanism), `sal_first` first (a gradient-noise variant). SAL's settings are
  the main job's defaults (`benchmarks/config.py`), not tuned per cell.
- **Peers**: `plateau` is `reduce_on_plateau` judged per epoch on the training
  loss, halving the rate after 2 epochs without a relative gain of 1e-4
  (optax's default tolerance; SAL's 5% would halve it almost every epoch);
  `noise` is `add_noise(0.01, 0.55)` on the gradient before the base optimizer
  (Neelakantan et al.'s setting). Only the base learning rate is tuned (on
  validation, for the baseline); the peers keep these fixed settings, so a
  peer that needs tuning (the gradient noise under Adam, whose normalization
  inflates it) is shown as a user would first meet it.
- **Selection**: the reported accuracy is the test accuracy at the epoch of best
  validation accuracy (first maximum); the test split never steers anything."""


def verdicts(
    pooled: dict, deformed: dict, floor, cost: dict, regimes: list[str], records
) -> list[str]:
    """Plain-language verdict lines, one per claim of the paper."""
    lines = []
    word, evidence = _claim(pooled, deformed, floor, "baseline", "stable")
    claim = "- **Better generalization than the base optimizer** (stable regime)"
    lines.append(f"{claim}: **{word}**; {evidence}.")
    for regime in (r for r in regimes if r != "stable"):
        word, evidence = _claim(pooled, deformed, floor, "baseline", regime)
        claim = f"- **Robustness, {regime}** (vs the base optimizer)"
        lines.append(f"{claim}: **{word}**; {evidence}.")
    for peer in ("plateau", "noise", "sam", "sal_first"):
        word, evidence = _claim(pooled, deformed, floor, peer, None)
        claim = f"- **SAL (last) beats `{peer}`** over all cells"
        lines.append(f"{claim}: **{word}**; {evidence}.")
    lines.append(_cost_claim(cost, records))
    lines.append(
        "- **Across six architectures, four optimizers and seven vision benchmarks**: "
        "**not measurable here** beyond the cells listed under Coverage (no GPU, 2 "
        "shared CPU cores, offline data only)."
    )
    return lines


def _cost_claim(cost: dict, records: list[dict]) -> str:
    nan = (float("nan"), float("nan"))
    ratio, grads = cost.get("sal", nan)
    # A peer that adds no gradient and almost no work shows the timing noise.
    floor = max(cost.get(p, nan)[0] for p in ("plateau", "noise"))
    shares = [r["val_share"] for r in records if r["method"] == "sal"]
    # One validation forward pass per epoch against forward and backward passes
    # (about 3 forward passes' worth) over the training split.
    compute = 100 * sum(shares) / max(1, len(shares)) / 3
    if math.isnan(ratio):
        return "- **Negligible cost**: **not measurable here**; no SAL run was timed."
    if ratio <= TIME_THRESHOLD and grads == 1:
        word = "confirmed"
    elif floor > TIME_THRESHOLD:
        word = "not measurable here by the clock (timing noise)"
    else:
        word = "not confirmed"
    return (
        f"- **Negligible cost**: **{word}**; SAL adds no gradient ({grads - 1:.0f} "
        f"extra per batch) and one validation pass per epoch, about {compute:.1f}% "
        f"more forward-pass compute here, plus SAL's own element-wise work per step; "
        f"its epoch time is {ratio:.2f}× the "
        f"baseline's, but peers that add no work read up to {floor:.2f}× on this "
        f"shared machine (threshold {TIME_THRESHOLD:.2f}×; SAM: "
        f"{cost.get('sam', nan)[0]:.2f}× with 1 extra gradient per batch)."
    )


def section(
    *,
    suite_name,
    records,
    folder,
    tables,
    pooled,
    deformed,
    floor,
    cost,
    coverage,
    telling,
) -> str:
    """Markdown of the section ``suite-SUITE``."""
    suite = SUITES[suite_name]
    finished, expected, combos = coverage
    env = _environment(folder)
    regimes = [r for r in suite.regimes if any(rec["regime"] == r for rec in records)]
    seconds = sum(r["seconds"] for r in records)
    rel = f"results/suite/{suite_name}"
    parts = [
        f"## Benchmark suite: {suite_name}",
        f"Generated by `python -m benchmarks.suite --suite {suite_name} --report-only` "
        f"from the cell files in `benchmarks/{rel}/` ({finished} of {expected} grid "
        "cells finished); do not edit by hand. Question: does SAL (`sal()` last in "
        "the chain, the paper's form) beat each peer, in which regimes, at what cost?",
        "### Verdicts",
        CLAIM_RULE + " " + floor_text(floor) + " W/T/L (over all runs) counts cells "
        "(dataset/model/optimizer/regime) whose own interval over seeds lies above "
        "0 / contains 0 / lies below 0. With 3 seeds a percentile bootstrap is "
        "narrow (it cannot see beyond the seeds drawn): read a per-cell verdict as "
        "a hint, the pooled ones as the evidence.",
        "\n".join(verdicts(pooled, deformed, floor, cost, regimes, records)),
        "### Methods and budget",
        DESIGN,
        "### Headline: SAL minus each peer (test accuracy, points)",
        "Mean of the paired differences over every (cell, seed), 95% percentile "
        "bootstrap interval (10,000 resamples), W/T/L over cells; then the same per "
        "regime. These pool every run, including those where SAL never deformed "
        "the model, where SAL − baseline is floating-point divergence between two "
        "programs (up to the noise floor stated under Verdicts); an interval that "
        "excludes 0 here is not by itself an effect of SAL, and the verdicts above "
        "use only the runs where SAL deformed the model.",
        tables["headline"],
        "### Cost",
        "Fastest epoch time (epochs 2 and later; epoch 1 compiles) relative to the "
        "baseline of the same cell and seed, paired only when both ran in the same "
        "process; the table gives the median of these ratios. The CPU was shared "
        "with other jobs, so the ratios are noisy (compare `noise`, which adds one "
        "cheap random draw); the gradient counts are exact. SAL's extra "
        "validation pass feeds its accuracy signal; the peers skip it.",
        tables["cost"],
        "### Plots",
        f"![accuracy per regime]({rel}/accuracy_per_regime.png)",
        f"![SAL versus the baseline]({rel}/sal_vs_baseline.png)",
        f"Most telling run: {telling.get('cell', 'n/a')}, seed {telling.get('seed')}, "
        f"SAL − baseline = {telling.get('difference', float('nan')):+.1f} points "
        "(the cell where the two differ most on average). Markers: SAL's elastic "
        "deformations, spring backs and plastic deformations; dotted line: the "
        "regime's event.",
        "### Grid",
        _grid(suite, seconds),
        "### Suites defined",
        _suites(pathlib.Path(folder), records),
        "### Test accuracy per cell (%, best-validation epoch, mean ± std)",
        tables["accuracy"],
        "### SAL minus each peer per cell (points, mean [95% CI] verdict)",
        tables["paired"],
        "### Learning rates chosen on validation",
        tables["sweep"],
        "### Coverage",
        f"{finished} of {expected} grid cells finished. Finished cells per "
        "dataset/model/optimizer (of the grid's):\n\n"
        + "\n".join(f"- {line}" for line in combos)
        + "\n\nEvery combination not listed was not run.",
        "### Commands that trained these cells",
        _commands(pathlib.Path(folder)),
        "### Reproduce",
        f"```\npython -m benchmarks.suite --suite {suite_name} "
        "--data-dir ../shared/data\n"
        f"python -m benchmarks.suite --suite {suite_name} --report-only\n```",
        f"Versions: {env.get('versions')}. Hardware: {env.get('hardware')}.",
    ]
    return "\n\n".join(parts)


def _suites(folder: pathlib.Path, records: list[dict]) -> str:
    """Every defined suite: its size, what exists on disk, a time estimate."""
    from benchmarks.suite import grid_cells, sweep_cells

    per_cell = sum(r["seconds"] for r in records) / max(1, len(records))
    lines = []
    for name, suite in SUITES.items():
        cells = grid_cells(suite) + sweep_cells(suite)
        done = sum(c.path(folder.parent / name).exists() for c in cells)
        hours = len(cells) * per_cell / 3600
        lines.append(
            f"- `{name}`: {len(cells)} cells (with the learning-rate sweep), "
            f"{done} finished here; at this section's mean of {per_cell:.0f} s per "
            f"cell that is {hours:.1f} hours, a floor: larger models and inputs "
            "cost more per cell."
        )
    return "\n".join(lines)


def _grid(suite, seconds: float) -> str:
    caps = "".join(
        f" ({name}: the first {count} training examples)"
        for name, count in suite.train_examples_by_dataset.items()
    )
    return (
        f"Datasets {', '.join(suite.datasets)}{caps}; "
        f"models {', '.join(suite.models)}; "
        f"optimizers {', '.join(suite.optimizers)}; regimes {', '.join(suite.regimes)} "
        f"(`benchmarks/regimes.py`); methods {', '.join(suite.methods)} "
        f"(`benchmarks/peers.py`); seeds {', '.join(map(str, suite.seeds))}; "
        f"{suite.epochs} epochs of batch {suite.batch_size}; every method gets the "
        "base learning rate chosen for the baseline. Training time of the finished "
        f"cells: {seconds / 60:.0f} minutes in all (compilation included)."
    )


def _commands(folder: pathlib.Path) -> str:
    path = folder / "commands.txt"
    lines = path.read_text().strip() if path.exists() else "(not recorded)"
    return f"```\n{lines}\n```"


def _environment(folder: pathlib.Path) -> dict:
    for path in sorted(pathlib.Path(folder).glob("**/*.json")):
        return json.loads(path.read_text()).get("environment", {})
    return {}
