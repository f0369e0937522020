"""Benchmark suite: SAL against its peers over datasets, models, optimizers, regimes.

Command: ``python -m benchmarks.suite --suite offline-quick`` (then ``--report``
to regenerate the tables and the "Benchmark suite" section of RESULTS.md from
the result files alone). Each run of one (dataset, model, optimizer, regime,
method, seed) is a cell, written to ``benchmarks/results/suite/SUITE/...json``
when it finishes; a cell whose file holds the same settings is never rerun,
so an interrupted suite loses at most the cell in flight (a file from other
settings, older SAL defaults say, is trained again). The base learning rate of each
(dataset, model, optimizer) is first chosen on the validation split by a
small sweep of the baseline (seed 0, stable regime), itself made of cells.

Measured: ``offline-quick`` (246 cells: 5 seeds and its learning-rate sweep)
took 8 minutes of wall time on 2 idle CPU cores (x86_64), compilation
included. The full grid is far larger; the "Benchmark suite" sections of
RESULTS.md give sizes and say which cells ran.

``--datasets``, ``--models``, ``--optimizers``, ``--regimes`` and ``--seeds``
run a subset of a suite into the same files.
"""

import dataclasses
import json
import os
import pathlib
import shlex
import socket
import sys
import time

from benchmarks import parallel, peers, report
from benchmarks.compare import OneLineParser
from benchmarks.config import Config
from benchmarks.data import BUILTIN_DATASETS, NPZ_ONLY_DATASETS, Dataset, get_dataset
from benchmarks.regimes import REGIMES, apply_regime
from benchmarks.train import train_and_evaluate

RESULTS_ROOT = pathlib.Path(__file__).with_name("results") / "suite"
METHODS = ("baseline", "plateau", "noise", "sal", "sal_first", "sam")
SAL_METHODS = ("sal", "sal_first")
LR_GRID = {
    "sgd": (0.01, 0.03, 0.1),
    "adam": (3e-4, 1e-3, 3e-3),
    "rmsprop": (1e-4, 3e-4, 1e-3),
    "nadam": (3e-4, 1e-3, 3e-3),
}
ARCHITECTURES = ("mlp", "lenet", "resnet20", "vgg11", "mobilenetv2", "vit")


@dataclasses.dataclass(frozen=True)
class Suite:
    """One grid: every combination of its fields is run."""

    datasets: tuple[str, ...]
    models: tuple[str, ...]
    optimizers: tuple[str, ...]
    regimes: tuple[str, ...]
    seeds: tuple[int, ...]
    epochs: int
    methods: tuple[str, ...] = METHODS
    batch_size: int = 128
    max_train_examples: int | None = None
    max_test_examples: int | None = None
    # Per-dataset cap on training examples, overriding ``max_train_examples``.
    train_examples_by_dataset: dict[str, int] = dataclasses.field(default_factory=dict)
    # Online suites read their datasets through tensorflow-datasets; offline
    # ones read every dataset that is not built in from --data-dir.
    online: bool = False

    def train_examples(self, dataset: str) -> int | None:
        """How many training examples of ``dataset`` a cell keeps (None: all)."""
        return self.train_examples_by_dataset.get(dataset, self.max_train_examples)


SUITES = {
    "offline-quick": Suite(
        datasets=("mnist1d", "digits"),
        models=("mlp",),
        optimizers=("adam",),
        # lr_shock last: its config differs, so its steps compile anew.
        regimes=("stable", "label_noise_40", "shift", "lr_shock"),
        seeds=(0, 1, 2, 3, 4),  # five: its verdicts are the headline
        epochs=15,
    ),
    "offline-full": Suite(
        datasets=("mnist1d", "digits", "mnist", "fashion_mnist"),
        models=ARCHITECTURES,
        optimizers=tuple(LR_GRID),
        regimes=tuple(REGIMES),
        seeds=(0, 1, 2, 3, 4),
        epochs=20,
        # The first 10k training images, as many as the MNIST copy holds: on 2
        # CPU cores a LeNet cell on all 60k takes 4-7 minutes instead of ~1.
        train_examples_by_dataset={"fashion_mnist": 10_000},
    ),
    "tfds": Suite(
        datasets=("mnist", "fashion_mnist", "cifar10", "cifar100", "svhn_cropped")
        + ("stl10", "tiny_imagenet"),
        models=ARCHITECTURES,
        optimizers=tuple(LR_GRID),
        regimes=tuple(REGIMES),
        seeds=(0, 1, 2),
        epochs=30,
        online=True,
    ),
    # One tiny cell of every kind, end to end: what CI and the tests run.
    "ci": Suite(
        datasets=("digits",),
        models=("mlp",),
        optimizers=("adam",),
        regimes=("stable",),
        seeds=(0,),
        epochs=2,
        methods=("baseline", "sal"),
        batch_size=50,
        max_train_examples=200,
        max_test_examples=50,
    ),
}


@dataclasses.dataclass(frozen=True)
class Cell:
    """One run of the grid; ``learning_rate`` is set for sweep cells only."""

    dataset: str
    model: str
    optimizer: str
    regime: str
    method: str
    seed: int
    learning_rate: float | None = None

    def path(self, root: pathlib.Path) -> pathlib.Path:
        """Result file of this cell under ``root``."""
        folder = root / self.dataset / self.model / self.optimizer
        if self.learning_rate is not None:
            return folder / "lr_sweep" / f"lr{self.learning_rate:g}.json"
        return folder / self.regime / f"{self.method}_s{self.seed}.json"


def sweep_cells(suite: Suite) -> list[Cell]:
    """The learning-rate sweep: baseline, stable regime, first seed."""
    return [
        Cell(d, m, o, "stable", "baseline", suite.seeds[0], lr)
        for d in suite.datasets
        for m in suite.models
        for o in suite.optimizers
        for lr in LR_GRID[o]
    ]


def grid_cells(suite: Suite) -> list[Cell]:
    """Every cell of the grid, seeds innermost so a compiled step is reused."""
    return [
        Cell(d, m, o, r, method, s)
        for d in suite.datasets
        for m in suite.models
        for o in suite.optimizers
        for r in suite.regimes
        for method in suite.methods
        for s in suite.seeds
    ]


def read_cell(path: pathlib.Path) -> dict:
    """A cell's result file."""
    return json.loads(path.read_text())


def chosen_learning_rate(cell: Cell, root: pathlib.Path) -> float:
    """Learning rate whose sweep run had the best validation accuracy."""
    scores = {}
    for lr in LR_GRID[cell.optimizer]:
        sweep = dataclasses.replace(
            cell, regime="stable", method="baseline", learning_rate=lr
        )
        history = read_cell(sweep.path(root))["history"]
        scores[lr] = max(row[report.VAL_ACCURACY] for row in history)
    # Ties go to the smaller rate: the first maximum in grid order.
    return max(scores, key=scores.get)


def config_of(suite: Suite, cell: Cell, learning_rate: float, data_dir) -> Config:
    """The training config of one cell."""
    return Config(
        dataset=cell.dataset,
        data_dir=source_dir(suite, cell.dataset, data_dir),
        max_train_examples=suite.train_examples(cell.dataset),
        max_test_examples=suite.max_test_examples,
        model=cell.model,
        optimizer=cell.optimizer,
        learning_rate=learning_rate,
        epochs=suite.epochs,
        batch_size=suite.batch_size,
        seeds=(cell.seed,),
        # Peers get no validation pass before the epoch's last step: SAL's
        # accuracy signal is part of SAL's own measured cost.
        sal_accuracy="val" if cell.method in SAL_METHODS else "none",
        progress=False,
    )


def run_cell(suite: Suite, cell: Cell, dataset: Dataset, config: Config, mesh) -> dict:
    """Trains one cell and returns its JSON-ready record."""
    config, dataset, hooks = apply_regime(cell.regime, config, dataset, cell.seed)
    updates = peers.UPDATES_PER_BATCH.get(cell.method, 1)
    hooks = dataclasses.replace(hooks, updates_per_batch=updates)
    if mesh is not None:
        hooks = parallel.with_data_parallel(hooks, mesh)
    result = train_and_evaluate(
        config, dataset, cell.seed, method=cell.method, hooks=hooks
    )

    steps = len(dataset.y_train) // config.batch_size
    return {
        "cell": dataclasses.asdict(cell),
        "config": config.to_dict(),
        "dataset": dataset.metadata(),
        "history": result.history,
        "summary": report.run_summary(result.history, result.wall_time),
        "cost": {
            "steps_per_epoch": steps,
            "gradient_evaluations_per_epoch": steps * updates,
            "extra_gradient_evaluations_per_epoch": steps * (updates - 1),
            "extra_validation_passes_per_epoch": int(cell.method in SAL_METHODS),
        },
        "process": {"host": socket.gethostname(), "pid": os.getpid()},
        "devices": parallel.describe(mesh),
    }


def write_cell(path: pathlib.Path, record: dict) -> None:
    """Writes a cell's file under a temporary name, then renames it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(record, indent=1))
    os.replace(temporary, path)


def restrict(suite: Suite, **subsets: tuple) -> Suite:
    """The suite limited to subsets of its grid axes (e.g. ``datasets=("digits",)``).

    A restricted run writes the same cell files as the whole suite, so the
    report of the whole suite shows which cells ran and which did not.
    """
    for axis, values in subsets.items():
        unknown = set(values) - set(getattr(suite, axis))
        if unknown:
            valid = ", ".join(map(str, getattr(suite, axis)))
            raise ValueError(
                f"--{axis} not in the suite: {sorted(unknown)} (it has {valid})"
            )
    return dataclasses.replace(suite, **subsets)


def run_suite(
    name: str, *, data_dir=None, root=RESULTS_ROOT, progress=True, subsets=None
) -> int:
    """Runs every missing cell of a suite; returns how many were run.

    Args:
      name: a key of ``SUITES``.
      data_dir: folder of the npz datasets (``../shared/data``).
      root: results root; the suite writes under ``root/name``.
      progress: show a tqdm bar over the grid.
      subsets: optional grid axes to restrict to (see ``restrict``).

    Returns:
      The number of cells trained by this call.
    """
    suite = restrict(SUITES[name], **(subsets or {}))
    check_sources(suite, data_dir)
    folder = pathlib.Path(root) / name
    cells = sweep_cells(suite) + grid_cells(suite)
    mesh = parallel.data_parallel_mesh()
    bar = _progress_bar(len(cells), 0, progress)

    # Sweep cells come first, so a grid cell's learning rate is known by the
    # time its settings are compared with those of its file.
    datasets, environment, trained = {}, report.environment(), 0
    for cell in cells:
        lr = cell.learning_rate or chosen_learning_rate(cell, folder)
        config = config_of(suite, cell, lr, data_dir)
        if is_current(cell.path(folder), config, cell.method):
            bar.update()
            continue
        if cell.dataset not in datasets:
            datasets[cell.dataset] = _load(suite, cell.dataset, data_dir)
        bar.set_postfix_str(f"{cell.dataset}/{cell.model}/{cell.regime}/{cell.method}")
        start = time.perf_counter()
        record = run_cell(suite, cell, datasets[cell.dataset], config, mesh)
        record.update(
            environment=environment,
            cell_seconds=time.perf_counter() - start,
            settings=cell_settings(config, cell.method),
        )
        if parallel.is_writer():
            write_cell(cell.path(folder), record)
        # Every process reads the sweep's files to pick learning rates, so
        # none may go on before process 0 has written (on a shared folder).
        parallel.wait_for_all(f"cell {trained}")
        trained += 1
        bar.update()
    bar.close()
    return trained


def cell_settings(config: Config, method: str) -> dict:
    """What a cell's result depends on besides its code: its config and peer.

    The data folder is left out (it is where the files are, not what they
    hold), and so is the regime's rewrite of the config, which follows from the
    cell. Stored JSON-normalized, so a value read back compares equal.
    """
    fields = config.to_dict()
    del fields["data_dir"], fields["lr_multipliers"]
    return json.loads(json.dumps({"config": fields, "method": peers.SETTINGS[method]}))


def is_current(path: pathlib.Path, config: Config, method: str) -> bool:
    """Whether ``path`` holds a finished cell trained with these settings.

    A cell file from other settings (older SAL defaults, another peer setting)
    is stale: the suite trains it again and the report leaves it out, so one
    table never pools runs of different settings.
    """
    if not path.exists():
        return False
    return read_cell(path).get("settings") == cell_settings(config, method)


def finished_cells(name: str, folder: pathlib.Path) -> list[Cell]:
    """The grid cells of suite ``name`` under ``folder`` that are current.

    A cell whose learning-rate sweep is incomplete cannot be checked, so it
    does not count as finished.
    """
    suite, finished = SUITES[name], []
    for cell in grid_cells(suite):
        if not cell.path(folder).exists():
            continue
        try:
            lr = chosen_learning_rate(cell, folder)
        except FileNotFoundError:
            continue
        if is_current(cell.path(folder), config_of(suite, cell, lr, None), cell.method):
            finished.append(cell)
    return finished


def source_dir(suite: Suite, dataset: str, data_dir: str | None) -> str | None:
    """The folder a dataset of ``suite`` is read from; None: built in or tfds."""
    if dataset in BUILTIN_DATASETS:
        return None
    if suite.online and dataset not in NPZ_ONLY_DATASETS:
        return None
    return data_dir


def check_sources(suite: Suite, data_dir: str | None) -> None:
    """Raises ValueError before any training if a dataset has no source.

    An offline suite must never fall back to downloading, so its npz datasets
    need ``data_dir``; so does an online suite's stand-in for Tiny-ImageNet.
    """
    needed = [
        d
        for d in suite.datasets
        if d not in BUILTIN_DATASETS and (not suite.online or d in NPZ_ONLY_DATASETS)
    ]
    if needed and data_dir is None:
        raise ValueError(
            f"--data-dir is needed for {', '.join(needed)} (npz files), got none"
        )
    if needed and not pathlib.Path(data_dir).is_dir():
        raise ValueError(f"--data-dir must be a folder, got {data_dir!r}")


def _load(suite: Suite, name: str, data_dir) -> Dataset:
    return get_dataset(
        name,
        source_dir(suite, name, data_dir),
        max_train_examples=suite.train_examples(name),
        max_test_examples=suite.max_test_examples,
    )


def _progress_bar(total: int, done: int, enabled: bool):
    try:
        from tqdm.auto import tqdm
    except ImportError as err:
        raise ImportError(
            "the suite's progress bar needs tqdm: pip install tqdm"
        ) from err
    return tqdm(total=total, initial=done, disable=not enabled, unit="cell")


AXES = ("datasets", "models", "optimizers", "regimes", "methods", "seeds")


def _parse_axis(axis: str, text: str) -> tuple:
    values = tuple(v.strip() for v in text.split(","))
    if axis != "seeds":
        return values
    if not all(v.lstrip("-").isdigit() for v in values):
        raise ValueError(f"--seeds must be comma-separated integers, got {text!r}")
    return tuple(int(v) for v in values)


COMMANDS_FILE = "commands.txt"


def _record_command(folder: pathlib.Path, argv) -> None:
    # The report lists every command that trained cells of this suite.
    words = sys.argv[1:] if argv is None else list(argv)
    line = " ".join(["python -m benchmarks.suite", *map(shlex.quote, words)])
    path = folder / COMMANDS_FILE
    known = path.read_text().splitlines() if path.exists() else []
    if line not in known and parallel.is_writer():
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join([*known, line]) + "\n")


def _axis_help(axis: str) -> str:
    """Help of an axis flag: what it restricts and the values the suites use."""
    values = dict.fromkeys(v for suite in SUITES.values() for v in getattr(suite, axis))
    return (
        f"comma-separated subset of the suite's {axis} (default: all of them); "
        f"the suites use {', '.join(map(str, values))}"
    )


def main(argv=None) -> None:
    """Parses flags, then runs the suite and/or regenerates its report."""
    parser = OneLineParser(
        prog="python -m benchmarks.suite", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--suite",
        choices=sorted(SUITES),
        default="offline-quick",
        help="the grid to run (default: %(default)s)",
    )
    parser.add_argument(
        "--data-dir", default=None, help="npz folder, e.g. ../shared/data"
    )
    parser.add_argument(
        "--results-dir", default=str(RESULTS_ROOT), help="default: %(default)s"
    )
    parser.add_argument(
        "--report", action="store_true", help="regenerate tables and RESULTS.md section"
    )
    parser.add_argument("--report-only", action="store_true", help="do not train")
    parser.add_argument(
        "--results-doc", default=None, help="document to write (benchmarks/RESULTS.md)"
    )
    parser.add_argument("--no-progress", action="store_true")
    for axis in AXES:
        parser.add_argument(f"--{axis}", help=_axis_help(axis))
    args = parser.parse_args(argv)
    try:
        subsets = {
            axis: _parse_axis(axis, getattr(args, axis))
            for axis in AXES
            if getattr(args, axis)
        }
        restricted = restrict(SUITES[args.suite], **subsets)
        if not args.report_only:
            check_sources(restricted, args.data_dir)
    except ValueError as error:
        parser.error(str(error))  # one line and exit code 2, before any file
    folder = pathlib.Path(args.results_dir) / args.suite
    if args.report_only and not folder.is_dir():
        parser.error(
            f"--results-dir {args.results_dir!r} holds no results of the suite "
            f"{args.suite!r}: {str(folder)!r} is not a folder"
        )

    parallel.initialize_from_environment()
    if not args.report_only:
        _record_command(pathlib.Path(args.results_dir) / args.suite, argv)
        run_suite(
            args.suite,
            data_dir=args.data_dir,
            root=args.results_dir,
            progress=not args.no_progress,
            subsets=subsets,
        )
    if args.report or args.report_only:
        from benchmarks import suite_report

        document = {"path": pathlib.Path(args.results_doc)} if args.results_doc else {}
        try:
            suite_report.write_report(
                args.suite, pathlib.Path(args.results_dir), **document
            )
        except suite_report.NoFinishedCellsError as error:
            parser.error(f"--results-dir {args.results_dir!r}: {error}")


if __name__ == "__main__":
    main()
