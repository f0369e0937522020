"""Tests of ``python -m benchmarks.compare``: one tiny run end to end, bad input."""

import contextlib
import io
import json
import os
import pathlib
import re
import signal
import subprocess
import sys

import numpy as np
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
    "duplicate-seeds": (["--seeds", "0,1,0"], "seeds must differ, got '0,1,0'"),
    "negative-seed": (["--seeds", "-1"], "seeds must be in [0, 2**32), got '-1'"),
    "huge-seed": (["--seeds", "0,99999999999999999999"], "'0,99999999999999999999'"),
    "seed-of-2**32": (["--seeds", "4294967296"], "[0, 2**32), got '4294967296'"),
    "run-name-is-a-path": (["--run-name", "../escape"], "--run-name must be"),
    "run-name-with-slash": (["--run-name", "a/b"], "'a/b'"),
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


def test_tiny_run_records_the_git_commit(tiny_run):
    results = json.loads((tiny_run[0] / "tiny" / report.RESULTS_FILE).read_text())
    if compare.git_revision() is None:
        assert report.GIT not in results
    else:
        assert re.fullmatch("[0-9a-f]{40}", results[report.GIT]["commit"])
        assert isinstance(results[report.GIT]["dirty"], bool)


def test_git_revision_is_none_without_git_or_outside_a_checkout(tmp_path, monkeypatch):
    assert compare.git_revision(tmp_path) is None

    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(compare.subprocess, "run", no_git)
    assert compare.git_revision() is None


def test_an_existing_run_name_is_refused_unless_overwrite(tiny_run, capsys):
    output_dir = tiny_run[0]
    before = sorted(p.name for p in (output_dir / "tiny").iterdir())
    argv = [*TINY_RUN, "--output-dir", str(output_dir), "--run-name", "tiny"]
    with pytest.raises(SystemExit) as exit_info:
        compare.main(argv)

    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--run-name 'tiny'" in err, err
    assert "--overwrite" in err and str(output_dir / "tiny") in err, err
    assert sorted(p.name for p in (output_dir / "tiny").iterdir()) == before
    compare.check_output(str(output_dir), "tiny", overwrite=True)  # no error


def test_default_run_names_differ_within_one_second():
    names = {compare.default_run_name() for _ in range(20)}
    assert len(names) == 20
    assert all(str(os.getpid()) in name for name in names)


def test_run_folders_of_one_name_at_once_get_their_own_work_folders(tmp_path):
    with pytest.raises(FileExistsError, match="same"):
        with report.run_folder(tmp_path, "same") as first:
            with report.run_folder(tmp_path, "same") as second:
                assert first != second
                (second / "who").write_text("second")
            (first / "who").write_text("first")

    # The second finished first and is kept; the first replaced nothing.
    assert [p.name for p in tmp_path.iterdir()] == ["same"]
    assert (tmp_path / "same" / "who").read_text() == "second"


def test_first_run_folder_to_finish_is_kept_unless_overwrite(tmp_path):
    with report.run_folder(tmp_path, "run") as folder:
        (folder / "who").write_text("old")
    with pytest.raises(FileExistsError):
        with report.run_folder(tmp_path, "run") as folder:
            (folder / "who").write_text("new")
    assert (tmp_path / "run" / "who").read_text() == "old"
    with report.run_folder(tmp_path, "run", overwrite=True) as folder:
        (folder / "who").write_text("new")
    assert (tmp_path / "run" / "who").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


@pytest.mark.parametrize("under", ["", "sub"], ids=["is-a-file", "under-a-file"])
def test_output_dir_that_is_a_file_exits_2_and_creates_nothing(tmp_path, capsys, under):
    blocker = tmp_path / "file"
    blocker.write_text("")
    output_dir = str(blocker / under) if under else str(blocker)
    with pytest.raises(SystemExit) as exit_info:
        compare.main([*TINY_RUN, "--output-dir", output_dir])

    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--output-dir" in err and output_dir in err, err
    assert list(tmp_path.iterdir()) == [blocker]


def _must_not_run(*args, **kwargs):
    raise AssertionError("bad input got past the checks")


def test_output_dir_that_cannot_be_created_exits_2_first(tmp_path, capsys, monkeypatch):
    # /proc refuses new folders even to root, whom permission bits do not stop:
    # the check must try to create, not read the bits.
    output_dir = "/proc/sal-optax-runs"
    if not pathlib.Path("/proc/self").is_dir():
        pytest.skip("needs Linux's /proc, which refuses new folders")
    monkeypatch.setattr(compare, "get_dataset_for", _must_not_run)
    with pytest.raises(SystemExit) as exit_info:
        compare.main([*TINY_RUN, "--output-dir", output_dir])

    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--output-dir {output_dir!r}" in err, err


def test_data_dir_that_is_a_file_says_so(tmp_path, capsys):
    argv = ["--dataset", "toy", "--data-dir", __file__]
    with pytest.raises(SystemExit) as exit_info:
        compare.main([*argv, "--output-dir", str(tmp_path / "runs")])

    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "must be a folder" in err and __file__ in err, err
    assert "does not exist" not in err


@pytest.mark.parametrize(
    ("y_train", "message"),
    [
        (-1, "y_train labels must be >= 0, got -1"),
        (0, "y_train must hold at least 2 classes, got only the label 0"),
    ],
    ids=["all-minus-one", "one-class"],
)
def test_npz_with_bad_labels_exits_2_before_training(
    tmp_path, capsys, monkeypatch, y_train, message
):
    x = np.zeros((40, 8), np.float32)
    y = np.full(40, y_train)
    np.savez(tmp_path / "toy.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    monkeypatch.setattr(compare, "train_and_evaluate", _must_not_run)
    argv = ["--dataset", "toy", "--data-dir", str(tmp_path), "--model", "mlp"]
    with pytest.raises(SystemExit) as exit_info:
        compare.main([*argv, "--batch-size", "8", "--output-dir", str(tmp_path / "r")])

    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"toy.npz: {message}" in err, err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "content", [b"PK\x03\x04broken", b"not an npz"], ids=["bad-zip", "not-zip"]
)
def test_a_corrupt_npz_exits_2_naming_the_file(tmp_path, capsys, content):
    (tmp_path / "broken.npz").write_bytes(content)
    argv = ["--dataset", "broken", "--data-dir", str(tmp_path)]
    with pytest.raises(SystemExit) as exit_info:
        compare.main([*argv, "--output-dir", str(tmp_path / "runs")])

    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "broken.npz" in err, err
    assert not (tmp_path / "runs").exists()


def _sigterm(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGTERM)


def _ctrl_c(*args, **kwargs):
    raise KeyboardInterrupt


@pytest.mark.parametrize(
    ("stop", "code", "word"),
    [(_sigterm, 143, "terminated"), (_ctrl_c, 130, "interrupted")],
    ids=["sigterm", "sigint"],
)
def test_a_stopped_run_leaves_nothing_and_ends_with_one_line(
    tmp_path, capsys, monkeypatch, stop, code, word
):
    monkeypatch.setattr(compare, "train_and_evaluate", stop)
    previous = signal.getsignal(signal.SIGTERM)
    assert compare.main([*TINY_RUN, "--output-dir", str(tmp_path)]) == code

    err = capsys.readouterr().err
    assert err.count("\n") == 1 and word in err, err
    assert list(tmp_path.iterdir()) == []  # no hidden partial folder either
    assert signal.getsignal(signal.SIGTERM) is previous


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
