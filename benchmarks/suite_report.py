"""Tables, plots and verdicts of the suite, generated from its cell files alone.

Command: ``python -m benchmarks.suite --suite offline-quick --report-only``. It
reads ``benchmarks/results/suite/SUITE/**.json``, writes ``summary.csv`` and
two PNG plots beside them, and replaces the section ``suite-SUITE`` of
``benchmarks/RESULTS.md``.
"""

import csv
import pathlib
import statistics
from collections import defaultdict

import numpy as np

from benchmarks import report, results_doc, stats
from benchmarks.regimes import shift_epoch
from benchmarks.suite import SUITES, finished_cells, grid_cells, sweep_cells

GROUP = ("dataset", "model", "optimizer", "regime")
PEERS = ("baseline", "plateau", "noise", "sam", "sal_first")
SUMMARY_FILE = "summary.csv"
REGIME_PLOT = "accuracy_per_regime.png"
CURVE_PLOT = "sal_vs_baseline.png"


class NoFinishedCellsError(FileNotFoundError):
    """A suite folder without one finished, current cell to report."""


def load_records(folder: pathlib.Path, suite_name: str) -> list[dict]:
    """One flat record per finished, current cell of the grid (sweeps excluded)."""
    records = []
    for grid_cell in finished_cells(suite_name, folder):
        cell = report_json(grid_cell.path(folder))
        history = cell["history"]
        timed = [row[report.EPOCH_TIME] for row in history[1:]] or [0.0]
        records.append(
            {
                **{k: cell["cell"][k] for k in (*GROUP, "method", "seed")},
                "accuracy": cell["summary"][report.BEST_VAL_TEST_ACCURACY],
                # Fastest epoch after the first (which compiles): on a shared
                # machine the minimum is the least disturbed by other jobs.
                "epoch_time": min(timed),
                "gradients": cell["cost"]["gradient_evaluations_per_epoch"],
                "steps": cell["cost"]["steps_per_epoch"],
                "pid": (cell["process"]["host"], cell["process"]["pid"]),
                **{key: history[-1][key] for key in report.EVENTS},
                "history": history,
                "learning_rate": cell["config"]["learning_rate"],
                "seconds": cell.get("cell_seconds", 0.0),
                "val_share": cell["dataset"]["num_val"] / cell["dataset"]["num_train"],
            }
        )
    return records


def report_json(path: pathlib.Path) -> dict:
    import json

    return json.loads(path.read_text())


def by_group(records: list[dict]) -> dict:
    """``{group: {method: {seed: record}}}``."""
    groups = defaultdict(lambda: defaultdict(dict))
    for r in records:
        groups[tuple(r[k] for k in GROUP)][r["method"]][r["seed"]] = r
    return groups


def paired(groups: dict, peer: str, method: str = "sal") -> dict:
    """``{group: [method - peer accuracy per shared seed]}``, in points."""
    out = {}
    for key, methods in groups.items():
        seeds = sorted(set(methods.get(method, {})) & set(methods.get(peer, {})))
        if seeds:
            a, b = methods[method], methods[peer]
            out[key] = [100 * (a[s]["accuracy"] - b[s]["accuracy"]) for s in seeds]
    return out


def deformed(record: dict) -> bool:
    """Whether SAL deformed the model in this run (elastic or plastic)."""
    return record[report.NUM_ELASTIC] + record[report.NUM_PLASTIC] > 0


def run_differences(groups: dict, peer: str) -> list[tuple[tuple, float, bool]]:
    """``[(group, SAL - peer in points, SAL deformed)]``, one per shared seed."""
    out = []
    for key, methods in sorted(groups.items()):
        sal, other = methods.get("sal", {}), methods.get(peer, {})
        for seed in sorted(set(sal) & set(other)):
            difference = 100 * (sal[seed]["accuracy"] - other[seed]["accuracy"])
            out.append((key, difference, deformed(sal[seed])))
    return out


def noise_floor(groups: dict, percentile: float = 95) -> tuple[float, int]:
    """Spread of SAL - baseline where SAL never deformed the model.

    Such a run differs from the baseline's only because the gate compiles to
    another program (different fusion, different rounding), so this spread is
    the smallest effect the suite can tell from floating-point divergence.

    Returns:
      ``(floor, runs)``: the percentile of ``|SAL - baseline|`` over those runs,
      in points, and how many runs it rests on; ``(nan, 0)`` when there are none.
    """
    runs = run_differences(groups, "baseline")
    idle = [abs(d) for _, d, active in runs if not active]
    if not idle:
        return float("nan"), 0
    return float(np.percentile(idle, percentile)), len(idle)


def deformed_pooled(groups: dict, regimes: tuple[str, ...]) -> dict:
    """SAL minus each peer over the runs where SAL deformed the model.

    Returns:
      ``{(peer, regime): (mean, low, high, deformed runs, all runs)}`` with
      ``regime`` None for all cells; mean, low and high are nan when SAL
      deformed the model in none of the runs.
    """
    pooled = {}
    for peer in PEERS:
        runs = run_differences(groups, peer)
        for regime in (None, *regimes):
            mine = [(d, a) for k, d, a in runs if regime in (None, k[3])]
            if not mine:
                continue
            active = [d for d, a in mine if a]
            nan = float("nan")
            interval = stats.bootstrap_ci(active) if active else (nan, nan, nan)
            pooled[(peer, regime)] = (*interval, len(active), len(mine))
    return pooled


def accuracy_table(groups: dict, methods: tuple[str, ...]) -> str:
    """Test accuracy (%) at the best-validation epoch, mean ± std over seeds."""
    rows = []
    for key, by_method in sorted(groups.items()):
        cells = []
        for m in methods:
            values = [100 * r["accuracy"] for r in by_method.get(m, {}).values()]
            cells.append(_mean_std(values))
        n = max(len(v) for v in by_method.values())
        sal_runs = by_method.get("sal", {}).values()
        active = sum(deformed(r) for r in sal_runs)
        rows.append(["/".join(key), str(n), *cells, f"{active}/{len(sal_runs)}"])
    return results_doc.markdown_table(
        ["cell (dataset/model/opt/regime)", "seeds", *methods, "SAL deformed (runs)"],
        rows,
    )


def paired_table(groups: dict) -> str:
    """SAL minus each peer per group: mean difference, 95% CI, verdict."""
    rows = []
    diffs = {peer: paired(groups, peer) for peer in PEERS}
    for key in sorted(groups):
        cells = []
        for peer in PEERS:
            if key not in diffs[peer]:
                cells.append("n/a")
                continue
            mean, low, high = stats.bootstrap_ci(diffs[peer][key])
            cells.append(
                f"{mean:+.1f} [{low:+.1f}, {high:+.1f}] {stats.verdict(low, high)}"
            )
        rows.append(["/".join(key), *cells])
    return results_doc.markdown_table(["cell", *(f"SAL − {p}" for p in PEERS)], rows)


def headline(groups: dict, regimes: tuple[str, ...]) -> tuple[str, dict]:
    """SAL minus each peer, pooled over cells and per regime; W/T/L over cells."""
    header = ["SAL − peer", "all cells: mean [95% CI], W/T/L", *regimes]
    rows, pooled = [], {}
    for peer in PEERS:
        diffs = paired(groups, peer)
        row = [peer]
        for regime in (None, *regimes):
            mine = {k: v for k, v in diffs.items() if regime in (None, k[3])}
            if not mine:
                row.append("n/a")
                continue
            everything = [d for v in mine.values() for d in v]
            mean, low, high = stats.bootstrap_ci(everything)
            wtl = stats.count_verdicts(
                [stats.verdict(*stats.bootstrap_ci(v)[1:]) for v in mine.values()]
            )
            row.append(f"{mean:+.2f} [{low:+.2f}, {high:+.2f}], {wtl}")
            pooled[(peer, regime)] = (mean, low, high, wtl)
        rows.append(row)
    return results_doc.markdown_table(header, rows), pooled


def cost_table(groups: dict, methods: tuple[str, ...]) -> tuple[str, dict]:
    """Epoch time relative to the baseline of the same cell, seed and process."""
    ratios, grads, events = defaultdict(list), defaultdict(list), defaultdict(list)
    for by_method in groups.values():
        base = by_method.get("baseline", {})
        for m, runs in by_method.items():
            for seed, r in runs.items():
                grads[m].append(r["gradients"] / r["steps"])
                events[m].append([r[k] for k in report.EVENTS])
                b = base.get(seed)
                if b is not None and b["pid"] == r["pid"] and b["epoch_time"] > 0:
                    ratios[m].append(r["epoch_time"] / b["epoch_time"])
    rows, cost = [], {}
    for m in methods:
        ratio = statistics.median(ratios[m]) if ratios[m] else float("nan")
        cost[m] = (ratio, statistics.fmean(grads[m]) if grads[m] else float("nan"))
        mean_events = (
            [statistics.fmean(e) for e in zip(*events[m], strict=True)]
            if events[m]
            else []
        )
        extra_val = "1" if m.startswith("sal") else "0"
        per_batch = cost[m][1]
        rows.append(
            [
                m,
                f"{ratio:.2f}×",
                str(len(ratios[m])),
                f"{per_batch:.0f}",
                f"{per_batch - 1:.0f}",
                extra_val,
                " / ".join(f"{e:.1f}" for e in mean_events),
            ]
        )
    header = [
        "method",
        "epoch time vs baseline (median ratio)",
        "pairs",
        "gradients per batch",
        "extra gradients per batch",
        "extra val passes per epoch",
        "elastic / spring-back / plastic per run",
    ]
    return results_doc.markdown_table(header, rows), cost


def sweep_table(folder: pathlib.Path, suite_name: str) -> str:
    """Validation accuracy of each swept learning rate, and the chosen one."""
    from benchmarks.suite import chosen_learning_rate

    rows, done = [], set()
    for cell in sweep_cells(SUITES[suite_name]):
        key = (cell.dataset, cell.model, cell.optimizer)
        path = cell.path(folder)
        if key in done or not path.exists():
            continue
        done.add(key)
        scores = []
        for sibling in sorted(path.parent.glob("lr*.json")):
            hist = report_json(sibling)["history"]
            lr = report_json(sibling)["config"]["learning_rate"]
            scores.append(
                f"{lr:g}: {100 * max(h[report.VAL_ACCURACY] for h in hist):.1f}"
            )
        try:
            chosen = f"{chosen_learning_rate(cell, folder):g}"
        except FileNotFoundError:
            chosen = "sweep incomplete"
        rows.append(["/".join(key), ", ".join(scores), chosen])
    return results_doc.markdown_table(
        ["dataset/model/opt", "best val accuracy % per lr", "chosen"], rows
    )


def coverage(folder: pathlib.Path, suite_name: str) -> tuple[int, int, list[str]]:
    """Finished and expected grid cells, and the (dataset, model, opt) done."""
    cells = grid_cells(SUITES[suite_name])
    finished = finished_cells(suite_name, folder)
    combos = defaultdict(lambda: [0, 0])
    for c in cells:
        combos[(c.dataset, c.model, c.optimizer)][1] += 1
    for c in finished:
        combos[(c.dataset, c.model, c.optimizer)][0] += 1
    lines = [f"{'/'.join(k)}: {a}/{b}" for k, (a, b) in combos.items() if a]
    return len(finished), len(cells), lines


def write_summary_csv(folder: pathlib.Path, records: list[dict]) -> None:
    """One row per finished cell, for regenerating tables elsewhere."""
    keys = (*GROUP, "method", "seed", "accuracy", "epoch_time", "gradients", "steps",
            *report.EVENTS, "learning_rate")  # fmt: skip
    with (folder / SUMMARY_FILE).open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(keys)
        for r in records:
            writer.writerow([r[k] for k in keys])


def _mean_std(values: list[float]) -> str:
    if not values:
        return "n/a"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.1f} ± {std:.1f}"


def write_report(
    suite_name: str, root: pathlib.Path, path=results_doc.RESULTS_PATH
) -> str:
    """Regenerates the suite's files and RESULTS.md section; returns the Markdown."""
    from benchmarks import suite_plots, suite_verdicts

    folder = pathlib.Path(root) / suite_name
    records = load_records(folder, suite_name)
    if not records:
        raise NoFinishedCellsError(f"no finished cells under {folder}")
    suite = SUITES[suite_name]
    groups = by_group(records)
    write_summary_csv(folder, records)
    suite_plots.plot_regimes(folder / REGIME_PLOT, groups, suite.methods, suite.regimes)
    telling = suite_plots.plot_telling_run(folder / CURVE_PLOT, groups, shift_epoch)

    regimes = tuple(r for r in suite.regimes if any(k[3] == r for k in groups))
    head, pooled = headline(groups, regimes)
    cost_md, cost = cost_table(groups, suite.methods)
    finished, expected, combos = coverage(folder, suite_name)
    markdown = suite_verdicts.section(
        suite_name=suite_name,
        records=records,
        folder=folder,
        tables={
            "headline": head,
            "accuracy": accuracy_table(groups, suite.methods),
            "paired": paired_table(groups),
            "cost": cost_md,
            "sweep": sweep_table(folder, suite_name),
        },
        pooled=pooled,
        deformed=deformed_pooled(groups, regimes),
        floor=noise_floor(groups),
        cost=cost,
        coverage=(finished, expected, combos),
        telling=telling,
    )
    results_doc.write_section(f"suite-{suite_name}", markdown, path)
    return markdown
