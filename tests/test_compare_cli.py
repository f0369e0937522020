"""Tests of ``python -m benchmarks.compare``: one tiny run end to end, bad input."""

import json
import pathlib
import subprocess
import sys

import pytest

from benchmarks import compare, report

TINY_RUN = [
    "--dataset", "digits", "--model", "mlp", "--epochs", "3", "--seeds", "0,1",
    "--batch-size", "40", "--max-train-examples", "200", "--max-test-examples", "50",
    "--patience", "1", "--yield-stress", "2", "--atol", "10", "--no-progress",
]  # fmt: skip


def test_tiny_run_writes_history_results_and_curves(tmp_path, capsys):
    argv = [*TINY_RUN, "--output-dir", str(tmp_path), "--run-name", "tiny"]
    assert compare.main(argv) == 0

    folder = tmp_path / "tiny"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny"]  # no leftovers
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [report.HISTORY_FILE, report.RESULTS_FILE, report.CURVES_FILE]
    )

    rows = report.read_history(folder / report.HISTORY_FILE)
    assert len(rows) == 2 * 2 * 3  # methods x seeds x epochs
    assert {(r[report.METHOD], r[report.SEED]) for r in rows} == {
        ("baseline", 0), ("baseline", 1), ("sal", 0), ("sal", 1)
    }  # fmt: skip
    sal_last = [r for r in rows if r[report.METHOD] == "sal" and r[report.EPOCH] == 3]
    assert all(r[report.NUM_PLASTIC] == 1 for r in sal_last)  # atol=10 stagnates

    results = json.loads((folder / report.RESULTS_FILE).read_text())
    assert set(results[report.VERSIONS]) >= {"python", "jax", "optax", "flax"}
    assert results[report.HARDWARE]["cpu_count"] >= 1
    assert results[report.SEEDS] == [0, 1]
    assert results[report.CONFIG]["epochs"] == 3
    assert results[report.COMMAND].startswith("python -m benchmarks.compare")
    assert len(results[report.RUNS]) == 4
    for method in ("baseline", "sal"):
        accuracy = results[report.SUMMARY][method][report.FINAL_TEST_ACCURACY]
        assert 0.0 <= accuracy[report.MEAN] <= 1.0
    assert results[report.SUMMARY]["sal"][report.NUM_ELASTIC][report.MEAN] == 1.0

    assert (folder / report.CURVES_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = capsys.readouterr().out
    assert "baseline" in table and "sal" in table and "s/epoch" in table


def test_a_failing_run_leaves_no_run_folder(tmp_path, monkeypatch):
    def broken_plot(*args, **kwargs):
        raise RuntimeError("plotting failed")

    monkeypatch.setattr(report, "plot_curves", broken_plot)
    # The tiny run's own flags: its compiled steps are reused, so this is quick.
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
