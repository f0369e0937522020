"""Tables, statistics and figures of ``benchmarks.flatness``."""

import json
import pathlib
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from scipy import stats

from benchmarks import landscape, report, trajectory
from benchmarks.results_doc import markdown_table

BOOTSTRAP_SAMPLES = 2000
CONFIDENCE = 0.95
SHARPNESS_MEASURES = {
    "lambda_max": ("lanczos", "max_eigenvalue"),
    "trace": ("trace", "trace"),
}


def run_row(result, recorded: dict | None) -> dict:
    """Identity, accuracy and events of one retrained run, checked against the run.

    Args:
      result: the ``RunResult`` of the retraining.
      recorded: the run's entry in ``results.json`` (None if it has none).

    Returns:
      A dict with the retrained and recorded final test accuracy and whether
      they are equal.
    """
    last = result.history[-1]
    accuracy = last[report.TEST_ACCURACY]
    expected = None if recorded is None else recorded[report.FINAL_TEST_ACCURACY]
    return {
        "method": result.method,
        "seed": result.seed,
        "test_accuracy": accuracy,
        "recorded_test_accuracy": expected,
        "reproduced": expected is not None and accuracy == expected,
        "train_loss": last[report.TRAIN_LOSS],
        **{key: last[key] for key in report.EVENTS},
    }


def event_snapshots(history: Sequence[dict]) -> dict[str, list[int]]:
    """Snapshot indices of each kind of event (snapshot 0 is the init)."""
    return {
        kind: [i + 1 for i in trajectory.event_indices([r[key] for r in history])]
        for kind, key in (
            ("elastic", report.NUM_ELASTIC),
            ("spring back", report.NUM_SPRING_BACK),
            ("plastic", report.NUM_PLASTIC),
        )
    }


def spearman_bootstrap(x: Sequence[float], y: Sequence[float], seed: int = 0) -> dict:
    """Spearman's rho of ``x`` and ``y`` with a percentile bootstrap interval.

    Resamples the pairs with replacement; resamples with a constant side
    (undefined rho) are dropped, and their number is reported.

    Returns:
      ``{"rho", "ci_low", "ci_high", "n", "num_undefined"}``; the interval is
      None with fewer than 3 pairs.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    rho = float(stats.spearmanr(x, y).statistic) if len(x) >= 3 else float("nan")
    out = {"rho": rho, "ci_low": None, "ci_high": None, "n": len(x), "num_undefined": 0}
    if len(x) < 3:
        return out

    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(BOOTSTRAP_SAMPLES):
        idx = rng.integers(0, len(x), len(x))
        if np.ptp(x[idx]) > 0 and np.ptp(y[idx]) > 0:
            draws.append(stats.spearmanr(x[idx], y[idx]).statistic)
    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = np.percentile(draws, [tail, 100 - tail])
    out.update(ci_low=float(low), ci_high=float(high))
    out["num_undefined"] = BOOTSTRAP_SAMPLES - len(draws)
    return out


def summary(rows: list[dict], results: dict, args, run_dir: pathlib.Path) -> dict:
    """The content of flatness.json: settings, per-run rows, correlations."""
    accuracy = [r["test_accuracy"] for r in rows]
    correlations = {
        name: spearman_bootstrap([r["sharpness"][a][b] for r in rows], accuracy)
        for name, (a, b) in SHARPNESS_MEASURES.items()
    }
    settings = {k: v for k, v in vars(args).items() if k not in ("run_dir", "out")}
    return {
        "run": run_dir.name,
        "run_command": results.get(report.COMMAND),
        "settings": settings,
        **report.environment(),
        "all_reproduced": all(r["reproduced"] for r in rows),
        "runs": rows,
        "spearman_sharpness_vs_test_accuracy": correlations,
    }


def format_table(summary: dict) -> str:
    """Plain-text table: one line per method and seed."""
    lines = ["method     seed  test acc  recorded  lambda_max (resid)   trace ± se"]
    for r in summary["runs"]:
        lz, tr = r["sharpness"]["lanczos"], r["sharpness"]["trace"]
        recorded = r["recorded_test_accuracy"]
        lines.append(
            f"{r['method']:<10} {r['seed']:>4}  {r['test_accuracy']:.4f}    "
            f"{'-' if recorded is None else f'{recorded:.4f}':<8}  "
            f"{lz['max_eigenvalue']:9.3f} ({lz['residual']:.1e})  "
            f"{tr['trace']:9.2f} ± {tr['stderr']:.2f}"
        )
    for name, c in summary["spearman_sharpness_vs_test_accuracy"].items():
        interval = (
            f"[{c['ci_low']:.2f}, {c['ci_high']:.2f}]"
            if c["ci_low"] is not None
            else "-"
        )
        lines.append(f"Spearman({name}, test acc) = {c['rho']:.2f}, 95% CI {interval}")
    return "\n".join(lines)


def plot_landscapes(arrays: dict, methods: list[str], out_dir: pathlib.Path) -> None:
    """Writes the 2D surfaces (train, test) and the 1D slices as PNG."""
    for split in ("train", "test"):
        surfaces = {m: arrays[f"{m}/{split}_loss_2d"] for m in methods}
        landscape.plot_surfaces(
            surfaces,
            arrays["alphas"],
            arrays["betas"],
            str(out_dir / f"landscape_{split}.png"),
            zlabel=f"{split} loss",
        )
    lines = {
        f"{m} {split}": arrays[f"{m}/{split}_loss_1d"]
        for m in methods
        for split in ("train", "test")
    }
    landscape.plot_lines(lines, arrays["line"], str(out_dir / "landscape_1d.png"))


def redraw(out_dir: pathlib.Path) -> None:
    """Draws every figure of an analysis from its saved arrays and JSON."""
    out_dir = pathlib.Path(out_dir)
    rows = json.loads((out_dir / "flatness.json").read_text())["runs"]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    if (out_dir / "landscape.npz").exists():
        plot_landscapes(dict(np.load(out_dir / "landscape.npz")), methods, out_dir)
    saved = np.load(out_dir / "trajectory.npz")
    projections = {
        m: trajectory.Projection(saved[f"{m}/coords"], None, saved[f"{m}/explained"])
        for m in methods
    }
    events = {
        # Spring-backs were not saved by earlier analyses: drawn where present.
        m: {
            k: list(saved[f"{m}/{k}"])
            for k in ("elastic", "spring back", "plastic")
            if f"{m}/{k}" in saved
        }
        for m in methods
    }
    trajectory.plot_trajectories(projections, events, str(out_dir / "trajectory.png"))
    plot_sharpness(rows, out_dir)
    for path in out_dir.glob("*.png"):
        _quantize_png(path)


def _quantize_png(path: pathlib.Path) -> None:
    # A 256-colour palette cuts the files about 3x (the 3D surfaces compress
    # badly in RGB), which keeps committed results small at no visible loss.
    from PIL import Image

    with Image.open(path) as image:
        palette = image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
    palette.save(path, optimize=True)


def save_trajectories(projections: dict, events: dict, out_dir: pathlib.Path) -> None:
    """Writes trajectory.npz."""
    arrays = {}
    for method, proj in projections.items():
        arrays[f"{method}/coords"] = proj.coords
        arrays[f"{method}/explained"] = proj.explained
        for kind, idx in events[method].items():
            arrays[f"{method}/{kind}"] = np.asarray(idx, np.int64)
    np.savez_compressed(out_dir / "trajectory.npz", **arrays)


def plot_sharpness(rows: list[dict], out_dir: pathlib.Path) -> None:
    """Writes sharpness.png: estimator convergence and sharpness vs accuracy."""
    fig, (ax_l, ax_t, ax_s) = plt.subplots(1, 3, figsize=(14, 4))
    colors = {
        m: f"C{i}" for i, m in enumerate(dict.fromkeys(r["method"] for r in rows))
    }

    for r in rows:
        label, color = f"{r['method']} seed {r['seed']}", colors[r["method"]]
        lz, tr = r["sharpness"]["lanczos"], r["sharpness"]["trace"]
        ax_l.plot(
            np.arange(1, len(lz["history"]) + 1),
            lz["history"],
            color=color,
            label=label,
        )
        n = np.arange(1, len(tr["running_mean"]) + 1)
        ax_t.plot(n, tr["running_mean"], color=color, label=label)
        ax_s.scatter(lz["max_eigenvalue"], 100 * r["test_accuracy"], color=color)
    ax_l.set(xlabel="Lanczos step", ylabel="top Ritz value", title="lambda_max")
    ax_t.set(xlabel="Rademacher probes", ylabel="running mean", title="Hessian trace")
    ax_s.set(xlabel="lambda_max", ylabel="test accuracy (%)", title="sharpness vs acc")
    for ax in (ax_l, ax_t):
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out_dir / "sharpness.png", dpi=80)
    plt.close(fig)


FIGURES = (
    "landscape_train",
    "landscape_test",
    "landscape_1d",
    "trajectory",
    "sharpness",
)


def render_markdown(name: str, summary: dict, figures_dir: str) -> str:
    """Markdown of one analysis for benchmarks/RESULTS.md.

    Args:
      name: the analysis' name (its folder under ``results/flatness``).
      summary: the content of its flatness.json.
      figures_dir: folder of its PNG files, relative to RESULTS.md.

    Returns:
      A subsection: command, hardware, per-run table, per-method means,
      correlations, timings and figures.
    """
    hw, versions = summary[report.HARDWARE], summary[report.VERSIONS]
    lines = [
        f"### {name}",
        "",
        f"Run: `{summary['run_command']}`; analysis settings: "
        f"`{json.dumps(summary['settings'], sort_keys=True)}`.",
        f"Hardware: {hw['cpu_count']} CPU cores ({hw['processor']}), "
        f"JAX {versions['jax']} on {hw['jax_backend']}. Retrained test accuracy "
        f"equals results.json for every run: **{summary['all_reproduced']}**.",
        "",
        _runs_table(summary["runs"]),
        "",
        _means_table(summary["runs"]),
        "",
    ]
    for measure, c in summary["spearman_sharpness_vs_test_accuracy"].items():
        ci = (
            "n/a" if c["ci_low"] is None else f"[{c['ci_low']:.2f}, {c['ci_high']:.2f}]"
        )
        lines.append(
            f"- Spearman rho({measure}, test accuracy) = {c['rho']:.2f}, "
            f"95% bootstrap CI {ci} (n = {c['n']}, {c['num_undefined']} "
            "undefined resamples dropped)."
        )
    lines += ["", _timings(summary), ""]
    lines += [f"![{fig}]({figures_dir}/{fig}.png)" for fig in FIGURES]
    return "\n".join(lines)


def overview_markdown(summaries: dict[str, dict]) -> str:
    """One row per analysis: SAL's events and its means against the baseline.

    Args:
      summaries: analysis name to the content of its flatness.json.

    Returns:
      A Markdown table, and a sentence counting the analyses in which SAL
      deformed the model and ended flatter on average.
    """
    header = ["analysis", "SAL events per run (elastic / spring back / plastic)",
              "lambda_max: baseline, SAL", "trace: baseline, SAL",
              "test acc %: baseline, SAL", "seeds where SAL is flatter"]  # fmt: skip
    rows, flatter, deformed = [], 0, 0
    for name, summary in summaries.items():
        runs = summary["runs"]
        base = [r for r in runs if r["method"] == "baseline"]
        sal = [r for r in runs if r["method"] == "sal"]
        events = " / ".join(
            f"{np.mean([r[key] for r in sal]):.1f}" for key in report.EVENTS
        )
        lam = [[_lambda_max(r) for r in group] for group in (base, sal)]
        trace = [[r["sharpness"]["trace"]["trace"] for r in g] for g in (base, sal)]
        acc = [[100 * r["test_accuracy"] for r in g] for g in (base, sal)]
        by_seed = {r["seed"]: _lambda_max(r) for r in base}
        wins = sum(_lambda_max(r) < by_seed[r["seed"]] for r in sal)
        # An analysis where SAL never deformed compares two equal methods.
        if any(r[report.NUM_ELASTIC] + r[report.NUM_PLASTIC] for r in sal):
            deformed += 1
            flatter += np.mean(lam[1]) < np.mean(lam[0])
        rows.append([
            name, events, *(f"{np.mean(a):.1f}, {np.mean(b):.1f}" for a, b in
                            (lam, trace, acc)), f"{wins} of {len(sal)}",
        ])  # fmt: skip
    sentence = (
        f"Of the {deformed} analyses in which SAL deformed the model, SAL's mean "
        f"lambda_max is below the baseline's in {flatter}."
    )
    return markdown_table(header, rows) + "\n\n" + sentence


def _lambda_max(run: dict) -> float:
    return run["sharpness"]["lanczos"]["max_eigenvalue"]


def _runs_table(runs: list[dict]) -> str:
    header = ["method", "seed", "test acc", "recorded", "elastic", "plastic",
              "lambda_max (Lanczos)", "resid", "iters", "lambda_min",
              "power", "trace ± se"]  # fmt: skip
    rows = []
    for r in runs:
        lz, pw, tr = (r["sharpness"][k] for k in ("lanczos", "power", "trace"))
        rows.append([
            r["method"], str(r["seed"]), f"{100 * r['test_accuracy']:.2f}",
            f"{100 * r['recorded_test_accuracy']:.2f}",
            str(r[report.NUM_ELASTIC]), str(r[report.NUM_PLASTIC]),
            f"{lz['max_eigenvalue']:.3f}", f"{lz['residual']:.0e}",
            str(lz["num_iters"]), f"{lz['min_eigenvalue']:.3f}",
            f"{pw['max_eigenvalue']:.3f}", f"{tr['trace']:.1f} ± {tr['stderr']:.1f}",
        ])  # fmt: skip
    return markdown_table(header, rows)


def _means_table(runs: list[dict]) -> str:
    rows = []
    for method in dict.fromkeys(r["method"] for r in runs):
        mine = [r for r in runs if r["method"] == method]
        lam = [r["sharpness"]["lanczos"]["max_eigenvalue"] for r in mine]
        trace = [r["sharpness"]["trace"]["trace"] for r in mine]
        acc = [100 * r["test_accuracy"] for r in mine]
        rows.append([method, str(len(mine))] + [_mean_sd(v) for v in (lam, trace, acc)])
    return markdown_table(
        ["method", "seeds", "lambda_max", "trace", "test acc (%)"], rows
    )


def _timings(summary: dict) -> str:
    parts = []
    for r in summary["runs"]:
        wall = sum(v["seconds"] for v in r["sharpness"].values())
        cpu = sum(v.get("cpu_seconds", np.nan) for v in r["sharpness"].values())
        parts.append(f"{r['method']} seed {r['seed']} {wall:.1f} s ({cpu:.1f} s CPU)")
    text = "Measured wall times (CPU time in brackets). Sharpness (Lanczos + power"
    text += " + trace; the first run includes compilation): " + ", ".join(parts) + "."
    for key, seconds in summary.get("landscape_seconds", {}).items():
        text += f" Landscape {key}: {seconds:.1f} s."
    return text


def _mean_sd(values: list[float]) -> str:
    sd = np.std(values, ddof=1) if len(values) > 1 else 0.0
    return f"{np.mean(values):.3f} ± {sd:.3f}"
