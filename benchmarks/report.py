"""Result keys, run folders, history.csv, results.json, curves.png and tables.

Keys are defined once here; ``train.py`` writes rows with them and every
reader (tables, plots, RESULTS.md) reads them back with the same names.
"""

import csv
import json
import os
import pathlib
import platform
import shutil
import statistics
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from benchmarks import results_doc

# Columns of history.csv, one row per method, seed and epoch.
METHOD = "method"
SEED = "seed"
EPOCH = "epoch"
TRAIN_LOSS = "train_loss"
TRAIN_ACCURACY = "train_accuracy"
VAL_LOSS = "val_loss"
VAL_ACCURACY = "val_accuracy"
TEST_LOSS = "test_loss"
TEST_ACCURACY = "test_accuracy"
STRESS = "stress"
NUM_ELASTIC = "num_elastic"
NUM_SPRING_BACK = "num_spring_back"
NUM_PLASTIC = "num_plastic"
EPOCH_TIME = "epoch_time"
HISTORY_COLUMNS = (
    METHOD, SEED, EPOCH, TRAIN_LOSS, TRAIN_ACCURACY, VAL_LOSS, VAL_ACCURACY,
    TEST_LOSS, TEST_ACCURACY, STRESS, NUM_ELASTIC, NUM_SPRING_BACK, NUM_PLASTIC,
    EPOCH_TIME,
)  # fmt: skip
EVENTS = (NUM_ELASTIC, NUM_SPRING_BACK, NUM_PLASTIC)

# Keys of results.json.
CONFIG = "config"
DATASET = "dataset"
VERSIONS = "versions"
HARDWARE = "hardware"
COMMAND = "command"
SEEDS = "seeds"
RUNS = "runs"
SUMMARY = "summary"
GIT = "git"
FINAL_TEST_ACCURACY = "final_test_accuracy"
BEST_VAL_EPOCH = "best_val_epoch"
BEST_VAL_TEST_ACCURACY = "best_val_test_accuracy"
WALL_TIME = "wall_time"
MEDIAN_EPOCH_TIME = "median_epoch_time"
MEAN = "mean"
STD = "std"

HISTORY_FILE = "history.csv"
RESULTS_FILE = "results.json"
CURVES_FILE = "curves.png"


@contextmanager
def run_folder(
    output_dir: str, run_name: str, *, overwrite: bool = False
) -> Iterator[pathlib.Path]:
    """Yields a hidden work folder, renamed to ``output_dir/run_name`` on success.

    On any failure, interrupts included, the work folder is removed, so no
    folder that looks complete is ever left behind. The work folder is unique
    to this call, so runs started at the same time never share one. An older
    folder of the same name is replaced, once the new one is complete, only
    with ``overwrite``; otherwise ``FileExistsError`` is raised.
    """
    final = pathlib.Path(output_dir) / run_name
    final.parent.mkdir(parents=True, exist_ok=True)
    work = pathlib.Path(
        tempfile.mkdtemp(prefix=f".{run_name}.", suffix=".partial", dir=final.parent)
    )
    try:
        yield work
        if final.exists() and not overwrite:
            raise FileExistsError(f"{final} already exists")
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    shutil.rmtree(final, ignore_errors=True)
    work.rename(final)


def _write_atomic(path: pathlib.Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_history(folder: pathlib.Path, rows: Sequence[dict]) -> pathlib.Path:
    """Writes ``history.csv`` with the columns ``HISTORY_COLUMNS``."""
    path = folder / HISTORY_FILE
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, HISTORY_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)
    return path


def read_history(path: pathlib.Path) -> list[dict]:
    """Reads ``history.csv`` back, with numbers as int or float."""
    with pathlib.Path(path).open(newline="") as f:
        rows = list(csv.DictReader(f))
    ints = (SEED, EPOCH, STRESS, *EVENTS)
    for row in rows:
        for key in HISTORY_COLUMNS[1:]:
            row[key] = int(row[key]) if key in ints else float(row[key])
    return rows


def run_summary(history: Sequence[dict], wall_time: float) -> dict:
    """Per-run entry of results.json: final and best-validation test accuracy."""
    best = max(history, key=lambda row: row[VAL_ACCURACY])  # first of ties
    last = history[-1]
    return {
        METHOD: last[METHOD],
        SEED: last[SEED],
        FINAL_TEST_ACCURACY: last[TEST_ACCURACY],
        BEST_VAL_EPOCH: best[EPOCH],
        BEST_VAL_TEST_ACCURACY: best[TEST_ACCURACY],
        **{key: last[key] for key in EVENTS},
        WALL_TIME: wall_time,
        MEDIAN_EPOCH_TIME: statistics.median(row[EPOCH_TIME] for row in history),
    }


def summarize(runs: Sequence[dict]) -> dict:
    """Mean and std over seeds of every numeric run entry, per method."""
    summary = {}
    for method in dict.fromkeys(run[METHOD] for run in runs):
        mine = [run for run in runs if run[METHOD] == method]
        keys = (FINAL_TEST_ACCURACY, BEST_VAL_TEST_ACCURACY, *EVENTS, MEDIAN_EPOCH_TIME)
        summary[method] = {key: _mean_std([run[key] for run in mine]) for key in keys}
    return summary


def _mean_std(values: Sequence[float]) -> dict:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {MEAN: statistics.fmean(values), STD: std}


def environment() -> dict:
    """Versions of python, jax, optax, flax and numpy, and the hardware."""
    import flax
    import jax
    import numpy
    import optax

    versions = {
        "python": platform.python_version(),
        "jax": jax.__version__,
        "optax": optax.__version__,
        "flax": flax.__version__,
        "numpy": numpy.__version__,
    }
    device = jax.devices()[0]
    hardware = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "jax_backend": jax.default_backend(),
        "device": getattr(device, "device_kind", str(device)),
    }
    return {VERSIONS: versions, HARDWARE: hardware}


def write_results(folder: pathlib.Path, results: dict) -> pathlib.Path:
    """Writes ``results.json``."""
    path = folder / RESULTS_FILE
    _write_atomic(path, json.dumps(results, indent=2, sort_keys=False) + "\n")
    return path


def read_results(path: pathlib.Path) -> dict:
    """Reads ``results.json`` back."""
    return json.loads(pathlib.Path(path).read_text())


def format_table(results: dict, *, markdown: bool = False) -> str:
    """Table of the summary: accuracy mean ± std over seeds, events, time."""
    header = [
        "method", "test acc (final)", "test acc (best val)",
        "elastic", "spring back", "plastic", "s/epoch",
    ]  # fmt: skip
    rows = [header]
    for method, s in results[SUMMARY].items():
        rows.append([
            method,
            format_pct(s[FINAL_TEST_ACCURACY]),
            format_pct(s[BEST_VAL_TEST_ACCURACY]),
            *(f"{s[key][MEAN]:.1f}" for key in EVENTS),
            f"{s[MEDIAN_EPOCH_TIME][MEAN]:.3f}",
        ])  # fmt: skip
    if markdown:
        return results_doc.markdown_table(header, rows[1:])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows
    )


def format_pct(stat: dict) -> str:
    """``"mean ± std"`` of a fraction, in percent with two decimals."""
    return f"{100 * stat[MEAN]:.2f} ± {100 * stat[STD]:.2f}"


# Marker of each SAL event on the curves, at the epoch whose end it happened at.
EVENT_MARKERS = {
    NUM_ELASTIC: ("^", "elastic deformation"),
    NUM_SPRING_BACK: ("v", "spring back"),
    NUM_PLASTIC: ("X", "plastic deformation"),
}
# A spring-back usually shares its epoch with a new elastic deformation, so
# it is drawn hollow (both stay visible); the rare plastic one is drawn
# larger, in red and on top, so no other marker hides it.
_MARKER_STYLE = {
    NUM_ELASTIC: dict(ms=7, mec="k", zorder=3),
    NUM_SPRING_BACK: dict(ms=9, mec="k", mfc="none", mew=1.2, zorder=4),
    NUM_PLASTIC: dict(ms=10, mec="k", mfc="red", zorder=5),
}


def plot_curves(folder: pathlib.Path, rows: Sequence[dict]) -> pathlib.Path:
    """Writes ``curves.png``: training loss and validation accuracy per epoch.

    One line per method and seed; every SAL event is marked on its run's
    curve, with a legend for the methods and one for the markers.
    """
    # A bare Figure needs no pyplot backend, so plotting to a file here leaves
    # a notebook's inline backend alone.
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    fig = Figure(figsize=(11, 4.2))
    axes = fig.subplots(1, 2)
    methods = list(dict.fromkeys(row[METHOD] for row in rows))
    colors = {m: f"C{i}" for i, m in enumerate(methods)}
    # Dashed baselines stay visible where SAL's solid lines run over them.
    styles = {m: "--" if m == "baseline" else "-" for m in methods}
    for (method, _), run in _group_runs(rows).items():
        for ax, key in zip(axes, (TRAIN_LOSS, VAL_ACCURACY), strict=True):
            _plot_run(ax, run, key, colors[method], styles[method])

    handles = [
        Line2D([], [], color=colors[m], linestyle=styles[m], label=m) for m in methods
    ]
    handles += [
        Line2D(
            [], [], color="grey", marker=mark, linestyle="", label=label,
            **{k: v for k, v in _MARKER_STYLE[event].items() if k != "zorder"},
        )
        for event, (mark, label) in EVENT_MARKERS.items()
    ]  # fmt: skip
    axes[0].set(xlabel="epoch", ylabel="training loss", yscale="log")
    axes[1].set(xlabel="epoch", ylabel="validation accuracy")
    axes[1].legend(handles=handles, loc="lower right", fontsize=8)
    fig.suptitle("Baseline vs SAL: one line per seed; markers are SAL events")
    fig.tight_layout()

    path = folder / CURVES_FILE
    tmp = path.with_name("curves.tmp.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)
    return path


def _group_runs(rows: Sequence[dict]) -> dict:
    runs: dict = {}
    for row in rows:
        runs.setdefault((row[METHOD], row[SEED]), []).append(row)
    return runs


def _plot_run(ax, run: Sequence[dict], key: str, color: str, style: str) -> None:
    epochs = [row[EPOCH] for row in run]
    values = [row[key] for row in run]
    ax.plot(epochs, values, color=color, linestyle=style, alpha=0.7, lw=1.2)
    previous = dict.fromkeys(EVENTS, 0)
    for row in run:
        for event, (mark, _) in EVENT_MARKERS.items():
            if row[event] > previous[event]:
                style_kw = _MARKER_STYLE[event]
                ax.plot(row[EPOCH], row[key], mark, color=color, **style_kw)
            previous[event] = row[event]
