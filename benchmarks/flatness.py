"""Flatness of a finished run: sharpness, loss landscapes and trajectories.

Command: ``python -m benchmarks.flatness --run-dir runs/NAME`` retrains each
method of the run for the chosen seeds (deterministically, recording the
parameters after every epoch), checks the test accuracy against the run's
``results.json``, then writes to ``runs/NAME/flatness/``: ``flatness.json``
(top Hessian eigenvalue, Hessian trace, their convergence, the rank
correlation of sharpness with test accuracy), ``landscape.npz``,
``trajectory.npz`` and PNG figures. Measured on 2 CPU cores for the main job:
see the "Flatness" section of ``benchmarks/RESULTS.md``.
"""

import argparse
import functools
import json
import os
import pathlib
import sys
import time
from collections.abc import Sequence

import jax
import numpy as np
import optax
from flax import nnx
from jax.flatten_util import ravel_pytree

from benchmarks import flatness_report as fr
from benchmarks import landscape, report, results_doc, sharpness, trajectory
from benchmarks.compare import OneLineParser, parse_seeds
from benchmarks.config import Config
from benchmarks.data import Dataset, get_dataset_for
from benchmarks.train import build_model, train_and_evaluate

USAGE_ERROR = 2
# The sharpness and landscapes are measured on this many training examples,
# the same fixed subset for every method and seed.
NUM_EXAMPLES = 1000
SUBSET_SEED = 0
GRID_POINTS = 21
GRID_SPAN = 1.0  # in units of the filter-normalized direction
LINE_POINTS = 41
LANCZOS_ITERS = 40
POWER_ITERS = 100
TRACE_SAMPLES = 100
EIGEN_TOL = 1e-3
# The trajectory's plane needs more snapshots than components: the
# initialisation and at least this many epochs.
TRAJECTORY_COMPONENTS = 2
MIN_EPOCHS = TRAJECTORY_COMPONENTS
# What render() and fr.redraw() read from each folder of an analysis.
RENDERED_FILES = ("flatness.json", "trajectory.npz")


def config_from_results(results: dict) -> Config:
    """Rebuilds the run's ``Config`` from ``results.json`` (lists become tuples)."""
    fields = {
        key: tuple(value) if isinstance(value, list) else value
        for key, value in results[report.CONFIG].items()
    }
    return Config(**fields)


def fixed_subset(x: np.ndarray, y: np.ndarray, num_examples: int, seed: int):
    """The first ``num_examples`` of a seeded permutation, as jax arrays."""
    idx = np.random.default_rng(seed).permutation(len(y))[:num_examples]
    return jax.numpy.asarray(x[idx]), jax.numpy.asarray(y[idx])


def functional(model: nnx.Module):
    """Splits a model into parameters and pure functions of them, in eval mode.

    The functions are cached per architecture (NNX graph definition), so the
    jitted estimators compile once for all methods and seeds of a run.

    Returns:
      ``(params, rest, loss_fn, metric_fn)``: the ``nnx.Param`` state, the
      other state (BatchNorm statistics, RNG counters), the mean
      cross-entropy ``loss_fn(params, (rest, x, y))``, and ``metric_fn``
      with the same arguments returning ``{"loss", "accuracy"}``. BatchNorm
      uses its running statistics, so both are deterministic functions of
      the parameters.
    """
    model.eval()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    return params, rest, *_pure_functions(graphdef)


@functools.cache
def _pure_functions(graphdef):
    def metric_fn(p, batch):
        rest, x, y = batch
        logits = nnx.merge(graphdef, p, rest)(x)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        accuracy = jax.numpy.mean(jax.numpy.argmax(logits, -1) == y)
        return {"loss": loss, "accuracy": accuracy}

    def loss_fn(p, batch):
        return metric_fn(p, batch)["loss"]

    return loss_fn, metric_fn


def _flat_params(model: nnx.Module) -> np.ndarray:
    return np.asarray(ravel_pytree(nnx.state(model, nnx.Param))[0], np.float32)


def retrain(config: Config, dataset: Dataset, method: str, seed: int):
    """Retrains one method and seed, recording the parameters after each epoch.

    Returns:
      ``(result, snapshots)``: the ``RunResult`` and a float32 array of shape
      ``(epochs + 1, num_params)`` whose first row is the initialisation.
    """
    snapshots = [_flat_params(build_model(config, dataset, seed))]

    def record(epoch, model, row):
        del epoch, row
        snapshots.append(_flat_params(model))

    result = train_and_evaluate(
        config, dataset, seed, method=method, on_epoch_end=record
    )
    return result, np.stack(snapshots)


def measure_sharpness(
    loss_fn,
    params,
    batch,
    key: jax.Array,
    *,
    lanczos_iters: int = LANCZOS_ITERS,
    power_iters: int = POWER_ITERS,
    trace_samples: int = TRACE_SAMPLES,
) -> dict:
    """Lanczos and power-iteration top eigenvalue, Hutchinson trace, timings."""
    out = {}
    estimators = {
        "lanczos": lambda k: sharpness.lanczos(
            loss_fn, params, batch, key=k, num_iters=lanczos_iters, tol=EIGEN_TOL
        ),
        "power": lambda k: sharpness.power_iteration(
            loss_fn, params, batch, key=k, num_iters=power_iters, tol=EIGEN_TOL
        ),
        "trace": lambda k: sharpness.hutchinson_trace(
            loss_fn, params, batch, key=k, num_samples=trace_samples
        ),
    }
    for (name, estimate), k in zip(
        estimators.items(), jax.random.split(key, 3), strict=True
    ):
        start, cpu_start = time.perf_counter(), time.process_time()
        out[name] = sharpness.to_json(estimate(k))
        out[name]["seconds"] = time.perf_counter() - start
        # CPU time too: on a shared machine the wall clock also counts waiting.
        out[name]["cpu_seconds"] = time.process_time() - cpu_start
    return out


def measure_landscapes(
    models: dict,
    train,
    test,
    key: jax.Array,
    *,
    grid_points: int = GRID_POINTS,
    span: float = GRID_SPAN,
) -> dict:
    """1D and 2D slices of train and test loss and accuracy for each method.

    Every method gets directions from the same two keys, so models of one
    architecture share the raw Gaussian draw (each rescaled to its own
    filters).
    """
    grid = np.linspace(-span, span, grid_points)
    line = np.linspace(-span, span, LINE_POINTS)
    key1, key2 = jax.random.split(key)
    arrays = {"alphas": grid, "betas": grid, "line": line}

    for method, (params, rest, metric_fn) in models.items():
        start = time.perf_counter()
        d1 = landscape.filter_normalized_direction(key1, params)
        d2 = landscape.filter_normalized_direction(key2, params)
        for split, batch in (("train", train), ("test", test)):
            data = (rest, *batch)
            plane_start, cpu_start = time.perf_counter(), time.process_time()
            plane = landscape.slice_2d(metric_fn, params, data, (d1, d2), grid, grid)
            seconds = time.perf_counter() - plane_start
            arrays[f"{method}/{split}_2d_seconds"] = np.array(seconds)
            cpu_seconds = time.process_time() - cpu_start
            arrays[f"{method}/{split}_2d_cpu_seconds"] = np.array(cpu_seconds)
            along = landscape.slice_1d(metric_fn, params, data, d1, line)
            for metric in ("loss", "accuracy"):
                arrays[f"{method}/{split}_{metric}_2d"] = plane[metric]
                arrays[f"{method}/{split}_{metric}_1d"] = along[metric]
        arrays[f"{method}/seconds"] = np.array(time.perf_counter() - start)
    return arrays


def analyze(run_dir: pathlib.Path, out_dir: pathlib.Path, args) -> dict:
    """Retrains, measures and writes every output; returns flatness.json's dict."""
    results = report.read_results(run_dir / report.RESULTS_FILE)
    config = config_from_results(results).replace(progress=False)
    dataset = get_dataset_for(config)
    seeds = args.seeds or list(config.seeds[:1])
    recorded = {(r[report.METHOD], r[report.SEED]): r for r in results[report.RUNS]}
    train = fixed_subset(
        dataset.x_train, dataset.y_train, args.num_examples, SUBSET_SEED
    )
    test = fixed_subset(dataset.x_test, dataset.y_test, args.num_examples, SUBSET_SEED)
    key = jax.random.key(args.key)

    rows, models, projections, events = [], {}, {}, {}
    for method in config.methods:
        for seed in seeds:
            result, snapshots = retrain(config, dataset, method, seed)
            params, rest, loss_fn, metric_fn = functional(result.model)
            row = fr.run_row(result, recorded.get((method, seed)))
            batch = (rest, *train)
            row["sharpness"] = measure_sharpness(
                loss_fn,
                params,
                batch,
                key,
                lanczos_iters=args.lanczos_iters,
                power_iters=args.power_iters,
                trace_samples=args.trace_samples,
            )
            rows.append(row)
            if seed == seeds[0]:
                models[method] = (params, rest, metric_fn)
                projections[method] = trajectory.project(
                    snapshots, TRAJECTORY_COMPONENTS
                )
                events[method] = fr.event_snapshots(result.history)

    summary = fr.summary(rows, results, args, run_dir)
    if not args.no_landscape:
        arrays = measure_landscapes(
            models, train, test, key, grid_points=args.grid, span=args.span
        )
        np.savez_compressed(out_dir / "landscape.npz", **arrays)
        summary["landscape_seconds"] = {
            f"{m}/{part}": float(arrays[f"{m}/{part}"])
            for m in models
            for part in ("seconds", "train_2d_seconds", "train_2d_cpu_seconds")
        }
    fr.save_trajectories(projections, events, out_dir)
    (out_dir / "flatness.json").write_text(json.dumps(summary, indent=2) + "\n")
    fr.redraw(out_dir)
    return summary


def render(folders: Sequence[str]) -> None:
    """Writes the generated part of the Flatness section of RESULTS.md."""
    parts, summaries = [], {}
    for folder in map(pathlib.Path, folders):
        summary = json.loads((folder / "flatness.json").read_text())
        summaries[folder.name] = summary
        fr.redraw(folder)
        relative = os.path.relpath(folder, results_doc.RESULTS_PATH.parent)
        parts.append(fr.render_markdown(folder.name, summary, relative))
    overview = "### Across analyses\n\n" + fr.overview_markdown(summaries)
    results_doc.write_section("flatness", "\n\n".join([overview, *parts]))


def build_parser() -> argparse.ArgumentParser:
    """The command-line flags."""
    p = OneLineParser(
        prog="python -m benchmarks.flatness", description=__doc__.split("\n")[0]
    )
    p.add_argument("--run-dir", help="folder with results.json")
    p.add_argument(
        "--render",
        nargs="+",
        metavar="DIR",
        help="instead of "
        "analysing, write the Flatness section of RESULTS.md from "
        "these folders of flatness.json and figures",
    )
    p.add_argument("--out", help="output folder (default: RUN_DIR/flatness)")
    p.add_argument(
        "--seeds",
        type=parse_seeds,
        help="seeds to retrain, e.g. 0,1,2 (default: the run's first)",
    )
    p.add_argument("--num-examples", type=int, default=NUM_EXAMPLES)
    p.add_argument("--grid", type=int, default=GRID_POINTS, help="points per axis")
    p.add_argument("--span", type=float, default=GRID_SPAN)
    p.add_argument("--lanczos-iters", type=int, default=LANCZOS_ITERS)
    p.add_argument("--power-iters", type=int, default=POWER_ITERS)
    p.add_argument("--trace-samples", type=int, default=TRACE_SAMPLES)
    p.add_argument("--key", type=int, default=0, help="seed of probes and directions")
    p.add_argument("--no-landscape", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Parses flags, runs the analysis, prints the table of sharpness."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.render:
        problem = _check_render(args.render)
        if problem:
            parser.error(problem)
        render(args.render)
        return 0
    if args.run_dir is None:
        parser.error("--run-dir or --render is required")
    run_dir = pathlib.Path(args.run_dir)
    if not (run_dir / report.RESULTS_FILE).is_file():
        parser.error(f"--run-dir {args.run_dir!r} has no {report.RESULTS_FILE}")
    problem = _check_args(args, report.read_results(run_dir / report.RESULTS_FILE))
    if problem:
        parser.error(problem)
    out_dir = pathlib.Path(args.out) if args.out else run_dir / "flatness"

    # Written into a work folder renamed over out_dir once complete: a failed
    # analysis leaves nothing, and a finished one no file of an older one.
    with report.run_folder(str(out_dir.parent), out_dir.name, overwrite=True) as work:
        summary = analyze(run_dir, work, args)
    print(fr.format_table(summary))
    print(f"wrote {out_dir}")
    return 0


# Smallest value of each count flag for which its estimate is defined (the
# trace's standard error needs two probes; a landscape axis, two points).
_MINIMUMS = {
    "num_examples": 1,
    "grid": 2,
    "lanczos_iters": 1,
    "power_iters": 1,
    "trace_samples": 2,
}


def _check_args(args, results: dict) -> str | None:
    """Returns what is wrong with the analysis flags, or None."""
    for name, minimum in _MINIMUMS.items():
        value = getattr(args, name)
        if value < minimum:
            flag = "--" + name.replace("_", "-")
            return f"{flag} must be >= {minimum}, got {value}"
    if not args.span > 0:
        return f"--span must be > 0, got {args.span}"
    missing = sorted(set(args.seeds or []) - set(results[report.SEEDS]))
    if missing:
        return (
            f"--seeds {missing} are not seeds of the run "
            f"(it has {results[report.SEEDS]})"
        )
    # Checked before retraining: the trajectory's PCA would fail at the end.
    epochs = results[report.CONFIG]["epochs"]
    if epochs < MIN_EPOCHS:
        return (
            f"the trajectory needs a run of at least {MIN_EPOCHS} epochs "
            f"({MIN_EPOCHS + 1} parameter snapshots with the initialisation), "
            f"but --run-dir {args.run_dir!r} has epochs={epochs}"
        )
    return None


def _check_render(folders: Sequence[str]) -> str | None:
    """Returns what is missing from the folders of ``--render``, or None."""
    for folder in folders:
        missing = [f for f in RENDERED_FILES if not pathlib.Path(folder, f).is_file()]
        if missing:
            return (
                f"--render {folder!r} is not a folder of a flatness analysis "
                f"(no {', '.join(missing)})"
            )
    return None


if __name__ == "__main__":
    sys.exit(main())
