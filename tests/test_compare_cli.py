"""Tests of ``python -m benchmarks.compare``: one tiny run end to end, bad input."""

import contextlib
import io
import json
import pathlib
import subprocess
import sys

import pytest

from benchmarks import compare, report, train

TINY_RUN = [
    "--dataset", "digits", "--model", "mlp", "--epochs", "3", "--seeds", "0,1",
    "--batch-size", "40", "--max-train-examples", "200", "--max-test-examples", "50",
    "--patience", "1", "--yield-stress", "2", "--atol", "10", "--no-progress",
    "--sal-position", "first",  # test_train.py runs sal last
]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The tiny run's folder and printed table, shared by the tests below."""
    output_dir = tmp_path_factory.mktemp("runs")
    argv = [*TINY_RUN, "--output-dir", str(output_dir), "--run-name", "tiny"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert compare.main(argv) == 0
    return output_dir, out.getvalue()


def test_tiny_run_writes_exactly_its_three_files(tiny_run):
    output_dir, _ = tiny_run
    folder = output_dir / "tiny"
    assert sorted(p.name for p in output_dir.iterdir()) == ["tiny"]  # no leftovers
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [report.HISTORY_FILE, report.RESULTS_FILE, report.CURVES_FILE]
    )
    assert (folder / report.CURVES_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tiny_run_history_has_every_method_seed_and_epoch(tiny_run):
    rows = report.read_history(tiny_run[0] / "tiny" / report.HISTORY_FILE)
    assert len(rows) == 2 * 2 * 3  # methods x seeds x epochs
    assert {(r[report.METHOD], r[report.SEED]) for r in rows} == {
        ("baseline", 0), ("baseline", 1), ("sal_first", 0), ("sal_first", 1)
    }  # fmt: skip

    # atol=10 stagnates: 1 sets the reference; 2: elastic; 3: spring back, plastic.
    sal = [r for r in rows if (r[report.METHOD], r[report.SEED]) == ("sal_first", 0)]
    counts = [tuple(r[k] for k in report.EVENTS) for r in sal]
    assert counts == [(0, 0, 0), (1, 0, 0), (1, 1, 1)]


def test_tiny_run_results_name_versions_config_and_summary(tiny_run):
    path = tiny_run[0] / "tiny" / report.RESULTS_FILE
    results = json.loads(path.read_text())
    assert set(results[report.VERSIONS]) >= {"python", "jax", "optax", "flax"}
    assert results[report.HARDWARE]["cpu_count"] >= 1
    assert results[report.SEEDS] == [0, 1]
    assert results[report.CONFIG]["epochs"] == 3
    assert results[report.COMMAND].startswith("python -m benchmarks.compare")
    assert len(results[report.RUNS]) == 4
    for method in ("baseline", "sal_first"):
        accuracy = results[report.SUMMARY][method][report.FINAL_TEST_ACCURACY]
        assert 0.0 <= accuracy[report.MEAN] <= 1.0
    summary = results[report.SUMMARY]["sal_first"]
    assert summary[report.NUM_ELASTIC][report.MEAN] == 1.0


def test_tiny_run_prints_the_table(tiny_run):
    table = tiny_run[1]
    assert "baseline" in table and "sal_first" in table and "s/epoch" in table


def test_a_failing_run_leaves_no_run_folder(tiny_run, tmp_path, monkeypatch):
    # Replays the tiny run's history instead of training, then fails after the
    # history file is written: the half-written work folder must go too.
    rows = report.read_history(tiny_run[0] / "tiny" / report.HISTORY_FILE)

    def replay(config, dataset, seed, *, method, **kwargs):
        key = (method, seed)
        history = [r for r in rows if (r[report.METHOD], r[report.SEED]) == key]
        return train.RunResult(method, seed, history, None, {}, wall_time=1.0)

    def broken_plot(*args, **kwargs):
        raise RuntimeError("plotting failed")

    monkeypatch.setattr(compare, "train_and_evaluate", replay)
    monkeypatch.setattr(report, "plot_curves", broken_plot)
    argv = [*TINY_RUN, "--output-dir", str(tmp_path), "--run-name", "x"]
    with pytest.raises(RuntimeError, match="plotting failed"):
        compare.main(argv)
    assert list(tmp_path.iterdir()) == []


BAD_FLAGS = {
    "unknown-dataset": (["--dataset", "imagenet21k"], "unknown dataset"),
    "negative-epochs": (["--epochs", "-3"], "epochs must be >= 1, got -3"),
    "missing-data-dir": (["--dataset", "mnist", "--data-dir", "nowhere"], "nowhere"),
    "bad-seeds": (["--seeds", "0,x"], "expected integers"),
    "unknown-flag": (["--colour", "red"], "unrecognized arguments"),
    "unknown-model": (["--model", "resnet999"], "invalid choice"),
    "yield-below-patience": (["--patience", "5", "--yield-stress", "2"], "yield"),
    "batch-too-large": (
        ["--dataset", "digits", "--max-train-examples", "50", "--batch-size", "64"],
        "--batch-size must be <=",
    ),
}


@pytest.mark.parametrize(("argv", "message"), BAD_FLAGS.values(), ids=BAD_FLAGS)
def test_bad_flags_exit_2_with_one_line_and_no_folder(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        compare.main([*argv, "--output-dir", str(tmp_path / "runs")])

    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "runs").exists()


def test_module_entry_point_exits_2_on_bad_flags():
    process = subprocess.run(
        [sys.executable, "-m", "benchmarks.compare", "--epochs", "0"],
        capture_output=True,
        text=True,
        cwd=pathlib.Path(__file__).resolve().parents[1],
    )
    assert process.returncode == 2
    assert process.stderr.strip().splitlines() == [
        "python -m benchmarks.compare: error: epochs must be >= 1, got 0"
    ]
