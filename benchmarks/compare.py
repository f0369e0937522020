"""Main job: a base optimizer with and without SAL, on several seeds.

Command: ``python -m benchmarks.compare`` (MNIST-1D, CNN, Adam, 3 seeds); it
writes ``runs/<run name>/{history.csv,results.json,curves.png}`` and prints a
table. Measured: 28 s (compilation included) on 2 idle CPU cores, about a
minute on a loaded machine; see the "Main job" of benchmarks/RESULTS.md.
Bad flags end with a one-line error and exit code 2, before any folder exists;
Ctrl-C (SIGINT) and SIGTERM remove the unfinished run and exit 130 and 143.
"""

import argparse
import contextlib
import os
import pathlib
import secrets
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence

from benchmarks import report
from benchmarks.config import SAL_ACCURACY_SOURCES, SAL_POSITIONS, Config
from benchmarks.data import DataError, Dataset, check_source, get_dataset_for
from benchmarks.models import MODELS
from benchmarks.train import BASE_OPTIMIZERS, train_and_evaluate

USAGE_ERROR = 2
SEED_LIMIT = 2**32
DEFAULTS = Config()
REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


class _Terminated(BaseException):
    """Raised from the SIGTERM handler so the run folder is cleaned up on the way."""


class OneLineParser(argparse.ArgumentParser):
    """Ends every usage error with one line and exit code 2."""

    def error(self, message: str):
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message}\n")


def parse_seeds(text: str) -> tuple[int, ...]:
    """The type of ``--seeds``: distinct integers in [0, 2**32), e.g. ``0,1,2``."""
    try:
        seeds = tuple(int(s) for s in text.split(","))
    except ValueError as err:
        message = f"expected integers like 0,1,2, got {text!r}"
        raise argparse.ArgumentTypeError(message) from err

    # Checked here, not once training starts: numpy refuses negative seeds,
    # and JAX keeps a seed's low 32 bits (2**32 would initialise like 0).
    if not all(0 <= s < SEED_LIMIT for s in seeds):
        raise argparse.ArgumentTypeError(f"seeds must be in [0, 2**32), got {text!r}")

    # A repeated seed would count one run twice in the mean and std.
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"seeds must differ, got {text!r}")
    return seeds


def build_parser() -> argparse.ArgumentParser:
    """The command-line flags; each default is the field of ``Config``."""
    p = OneLineParser(
        prog="python -m benchmarks.compare", description=__doc__.split("\n")[0]
    )
    d = DEFAULTS
    p.add_argument(
        "--dataset",
        default=d.dataset,
        help="mnist1d, digits, a tfds "
        "name, or NAME with --data-dir holding NAME.npz or NAME_*.npz",
    )
    p.add_argument(
        "--data-dir",
        default=d.data_dir,
        help="folder of npz files, e.g. ../shared/data",
    )
    p.add_argument("--model", default=d.model, choices=sorted(MODELS))
    p.add_argument("--optimizer", default=d.optimizer, choices=sorted(BASE_OPTIMIZERS))
    p.add_argument("--learning-rate", type=float, default=d.learning_rate)
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--seeds", type=parse_seeds, default=d.seeds, help="e.g. 0,1,2")
    p.add_argument(
        "--sal-position",
        default=d.sal_position,
        choices=SAL_POSITIONS,
        help="sal() last in the chain (paper), first, or both",
    )
    p.add_argument(
        "--sal-accuracy",
        default=d.sal_accuracy,
        choices=SAL_ACCURACY_SOURCES,
        help="score fed to sal as accuracy=",
    )
    sal_numbers = {"patience": int, "yield_stress": int, "cooldown": int}
    sal_numbers.update(dict.fromkeys(("noise_scale", "plastic_scale"), float))
    sal_numbers.update(dict.fromkeys(("rtol", "atol", "min_rms"), float))
    for name, kind in sal_numbers.items():
        flag = f"--{name.replace('_', '-')}"
        p.add_argument(flag, type=kind, default=getattr(d, name), help="sal()")
    p.add_argument("--no-spring-back", dest="spring_back", action="store_false")
    p.add_argument("--max-train-examples", type=int, default=d.max_train_examples)
    p.add_argument("--max-test-examples", type=int, default=d.max_test_examples)
    p.add_argument("--output-dir", default=d.output_dir)
    p.add_argument(
        "--run-name",
        default=d.run_name,
        help="a folder name, not a path; default: a timestamp and the process id",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier run of the same --run-name",
    )
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return p


def default_run_name() -> str:
    """A run name of the time, the process id and a random suffix.

    Runs started in the same second, by one process or several, differ.
    """
    stamp = time.strftime("compare-%Y%m%d-%H%M%S")
    return f"{stamp}-{os.getpid()}-{secrets.token_hex(2)}"


def check_output(output_dir: str, run_name: str, overwrite: bool = False) -> None:
    """Raises ``ValueError`` naming the flag if the run folder cannot be written.

    Args:
      output_dir: value of ``--output-dir``; it or its first existing parent
        must be a folder.
      run_name: value of ``--run-name``; a plain folder name, not a path.
      overwrite: whether an existing ``output_dir/run_name`` may be replaced.
    """
    if (
        not run_name
        or run_name in (".", "..")
        or run_name.startswith(".")
        or any(sep and sep in run_name for sep in (os.sep, os.altsep, "/"))
    ):
        raise ValueError(
            f"--run-name must be a folder name without '/' or a leading '.', "
            f"got {run_name!r}"
        )

    folder = pathlib.Path(output_dir)
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise ValueError(
            f"--output-dir must be a folder, but {str(existing)!r} is a file "
            f"(got {output_dir!r})"
        )

    final = folder / run_name
    if final.exists() and not overwrite:
        raise ValueError(
            f"--run-name {run_name!r}: {str(final)!r} already exists; "
            "pass --overwrite to replace it"
        )

    # Permission bits do not tell (root ignores them; /proc refuses anyway):
    # make and remove a folder where the run's first folder will go.
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".probe-", dir=existing))
    except OSError as err:
        raise ValueError(
            f"--output-dir {output_dir!r} cannot be created: {str(existing)!r} "
            f"refuses new folders ({err.strerror or type(err).__name__})"
        ) from err


def git_revision(repo: pathlib.Path = REPO_ROOT) -> dict | None:
    """The commit of ``repo`` and whether its tracked files differ from it.

    Returns None when git is missing or ``repo`` is not the top of a checkout
    (an installed package), so a run never fails for want of git.
    """

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(repo), *args],
            capture_output=True, text=True, check=True, timeout=30,
        ).stdout.strip()  # fmt: skip

    try:
        top, commit = git("rev-parse", "--show-toplevel", "HEAD").splitlines()
        if pathlib.Path(top).resolve() != repo.resolve():
            return None
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return {"commit": commit, "dirty": dirty}


def run_comparison(
    config: Config, dataset: Dataset, command: str = "", *, overwrite: bool = False
) -> dict:
    """Trains every method on every seed, writes the run folder, returns results."""
    run_name = config.run_name or default_run_name()
    revision = git_revision()
    bar = _progress_bar(config)
    with report.run_folder(config.output_dir, run_name, overwrite=overwrite) as folder:
        rows, runs = [], []
        for method in config.methods:
            for seed in config.seeds:
                result = train_and_evaluate(
                    config, dataset, seed, method=method, progress=bar
                )
                rows.extend(result.history)
                runs.append(report.run_summary(result.history, result.wall_time))
        results = {
            report.COMMAND: command,
            report.CONFIG: config.to_dict(),
            report.DATASET: dataset.metadata(),
            **report.environment(),
            **({report.GIT: revision} if revision else {}),
            report.SEEDS: list(config.seeds),
            report.RUNS: runs,
            report.SUMMARY: report.summarize(runs),
        }
        report.write_history(folder, rows)
        report.plot_curves(folder, rows)
        report.write_results(folder, results)
    results["folder"] = str(folder.parent / run_name)
    return results


def _progress_bar(config: Config):
    if not config.progress:
        return None
    from tqdm.auto import tqdm

    total = len(config.methods) * len(config.seeds) * config.epochs
    bar = tqdm(total=total, unit="epoch", dynamic_ncols=True)

    def update(row: dict) -> None:
        bar.set_postfix_str(
            f"{row[report.METHOD]} seed {row[report.SEED]} "
            f"epoch {row[report.EPOCH]} loss {row[report.TRAIN_LOSS]:.3f} "
            f"val acc {row[report.VAL_ACCURACY]:.3f} stress {row[report.STRESS]}"
        )
        bar.update()
        if bar.n == bar.total:
            bar.close()

    return update


def main(argv: Sequence[str] | None = None) -> int:
    """Parses flags, checks them, runs the comparison and prints the table.

    Ctrl-C and SIGTERM end it with one line and exit code 130 or 143; the
    unfinished run folder is removed on the way out.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        with _sigterm_raises():
            return _main(parser, argv)
    except KeyboardInterrupt:
        return _stopped(parser, "interrupted", 128 + signal.SIGINT)
    except _Terminated:
        return _stopped(parser, "terminated", 128 + signal.SIGTERM)


def _main(parser: argparse.ArgumentParser, argv: list[str]) -> int:
    flags = vars(parser.parse_args(argv))
    overwrite = flags.pop("overwrite")
    flags["run_name"] = flags["run_name"] or default_run_name()
    try:
        config = Config(**flags)
        check_output(config.output_dir, config.run_name, overwrite)
        check_source(config.dataset, config.data_dir)
        dataset = get_dataset_for(config)
    except (ValueError, DataError) as err:
        parser.error(str(err))
    if config.batch_size > len(dataset.y_train):
        parser.error(
            f"--batch-size must be <= the {len(dataset.y_train)} training examples, "
            f"got {config.batch_size}"
        )

    command = shlex.join(["python", "-m", "benchmarks.compare", *argv])
    results = run_comparison(config, dataset, command, overwrite=overwrite)
    print(report.format_table(results))
    print(f"wrote {results['folder']}")
    return 0


@contextlib.contextmanager
def _sigterm_raises():
    """Turns SIGTERM into ``_Terminated`` while active, as Ctrl-C is for SIGINT."""

    def handler(signum, frame):
        raise _Terminated

    # Only the main thread may set handlers; elsewhere SIGTERM keeps its default.
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stopped(parser: argparse.ArgumentParser, what: str, code: int) -> int:
    sys.stderr.write(f"{parser.prog}: {what}; the unfinished run was removed\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
