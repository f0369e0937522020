"""Plots of the suite: accuracy per regime, and the most telling SAL run."""

import pathlib
import statistics

import matplotlib.pyplot as plt

from benchmarks import report  # noqa: E402

EVENT_STYLE = {
    report.NUM_ELASTIC: ("v", "tab:orange", "elastic"),
    report.NUM_SPRING_BACK: ("^", "tab:green", "spring back"),
    report.NUM_PLASTIC: ("X", "tab:red", "plastic"),
}
SHOCKED_REGIMES = ("lr_shock", "shift")


def plot_regimes(path: pathlib.Path, groups: dict, methods, regimes) -> None:
    """Bars of test accuracy (mean ± std over seeds), one panel per cell."""
    rows = sorted({key[:3] for key in groups})
    regimes = [r for r in regimes if any(key[3] == r for key in groups)]
    fig, axes = plt.subplots(
        len(rows), len(regimes), figsize=(3.2 * len(regimes), 2.8 * len(rows)),
        squeeze=False,
    )  # fmt: skip
    for i, row in enumerate(rows):
        for j, regime in enumerate(regimes):
            by_method = groups.get((*row, regime), {})
            _bars(axes[i][j], by_method, methods)
            axes[i][j].set_title(f"{'/'.join(row)}\n{regime}", fontsize=8)
        axes[i][0].set_ylabel("test accuracy (%)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _bars(ax, by_method: dict, methods) -> None:
    values = [
        [100 * r["accuracy"] for r in by_method.get(m, {}).values()] for m in methods
    ]
    means = [statistics.fmean(v) if v else float("nan") for v in values]
    errs = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in values]
    ax.bar(range(len(methods)), means, yerr=errs, color=_colors(methods))
    ax.set_xticks(range(len(methods)), methods, rotation=60, fontsize=7)
    # Zoomed on the bars' range: the differences are a few points at most.
    spans = [(m - e, m + e) for m, e in zip(means, errs, strict=True) if m == m]
    if spans:
        low, high = min(a for a, _ in spans), max(b for _, b in spans)
        margin = max(1.0, 0.15 * (high - low))
        ax.set_ylim(max(0.0, low - margin), min(100.0, high + margin))


def plot_telling_run(path: pathlib.Path, groups: dict, shift_epoch) -> dict:
    """Curves of SAL and the baseline for the cell and seed where they differ most.

    The cell is the one with the largest mean |SAL - baseline| over seeds, the
    seed the one with the largest difference within it. SAL's events are
    marked at the epoch where their counter grew; a dotted line marks the
    regime's event (the shock, or the switch of the inputs).
    """
    best = None
    for key, by_method in groups.items():
        sal, base = by_method.get("sal", {}), by_method.get("baseline", {})
        diffs = {
            s: sal[s]["accuracy"] - base[s]["accuracy"] for s in set(sal) & set(base)
        }
        if diffs:
            score = abs(statistics.fmean(diffs.values()))
            seed = max(diffs, key=lambda s: abs(diffs[s]))
            if best is None or score > best[0]:
                best = (score, key, seed, diffs[seed])
    if best is None:
        return {}
    _, key, seed, diff = best
    sal, base = (
        groups[key]["sal"][seed]["history"],
        groups[key]["baseline"][seed]["history"],
    )

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, metric in zip(
        axes, (report.VAL_ACCURACY, report.TEST_ACCURACY), strict=True
    ):
        for history, name, color in (
            (base, "baseline", "tab:blue"),
            (sal, "sal", "black"),
        ):
            epochs = [row[report.EPOCH] for row in history]
            ax.plot(
                epochs, [100 * row[metric] for row in history], color=color, label=name
            )
        _mark_events(ax, sal, metric)
        if key[3] in SHOCKED_REGIMES:
            ax.axvline(len(sal) // 2 + 1, linestyle=":", color="grey", label=key[3])
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{metric.replace('_', ' ')} (%)")
    axes[0].legend(fontsize=7)
    fig.suptitle(
        f"{'/'.join(key)}, seed {seed}: SAL − baseline = {100 * diff:+.1f} points"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return {"cell": "/".join(key), "seed": seed, "difference": 100 * diff}


def _mark_events(ax, history, metric) -> None:
    for key, (marker, color, label) in EVENT_STYLE.items():
        xs, ys, previous = [], [], 0
        for row in history:
            if row[key] > previous:
                xs.append(row[report.EPOCH])
                ys.append(100 * row[metric])
            previous = row[key]
        if xs:
            ax.scatter(xs, ys, marker=marker, color=color, zorder=3, label=label)


def _colors(methods) -> list[str]:
    palette = plt.get_cmap("tab10").colors
    return [palette[i % len(palette)] for i, _ in enumerate(methods)]
