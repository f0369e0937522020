"""Tests of benchmarks/suite.py: one tiny cell end to end, resumption, peers."""

import dataclasses
import json

import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import peers, stats, suite, suite_report, suite_verdicts
from benchmarks.config import Config
from benchmarks.train import METHODS, make_optimizer

pytestmark = pytest.mark.filterwarnings(
    # tqdm.auto falls back to the text bar outside notebooks and says so.
    "ignore::tqdm.TqdmExperimentalWarning"
)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The CI suite run once, with a one-rate sweep to keep compilation short."""
    root = tmp_path_factory.mktemp("suite")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(suite.LR_GRID, "adam", (3e-3,))
        count = suite.run_suite("ci", root=root, progress=False)
        yield root, count


def test_tiny_cell_runs_end_to_end(finished, tmp_path, monkeypatch):
    root, count = finished
    cells = suite.grid_cells(suite.SUITES["ci"])
    assert count == len(cells) + 1  # the grid and its one-rate sweep

    record = json.loads(cells[-1].path(root / "ci").read_text())
    assert record["cell"]["method"] == "sal"
    assert len(record["history"]) == suite.SUITES["ci"].epochs
    assert record["cost"]["extra_gradient_evaluations_per_epoch"] == 0

    monkeypatch.setitem(suite.LR_GRID, "adam", (3e-3,))
    document = tmp_path / "RESULTS.md"
    markdown = suite_report.write_report("ci", root, path=document)
    assert "<!-- BEGIN suite-ci -->" in document.read_text()
    assert "| baseline |" in markdown and "### Verdicts" in markdown
    assert (root / "ci" / suite_report.REGIME_PLOT).stat().st_size > 0


def test_finished_cells_are_not_rerun(finished, monkeypatch):
    root, _ = finished
    cells = suite.grid_cells(suite.SUITES["ci"])
    path = cells[0].path(root / "ci")
    record = json.loads(path.read_text())
    path.unlink()  # as if interrupted during that cell
    ran = []

    def fake_run_cell(s, cell, dataset, config, mesh):
        ran.append(cell)
        return record

    monkeypatch.setattr(suite, "run_cell", fake_run_cell)
    monkeypatch.setitem(suite.LR_GRID, "adam", (3e-3,))
    assert suite.run_suite("ci", root=root, progress=False) == 1
    assert ran == [cells[0]]
    assert suite.run_suite("ci", root=root, progress=False) == 0


def test_cells_of_other_settings_are_stale(finished, monkeypatch):
    root, _ = finished
    monkeypatch.setitem(suite.LR_GRID, "adam", (3e-3,))
    cells = suite.grid_cells(suite.SUITES["ci"])
    assert suite.finished_cells("ci", root / "ci") == cells
    path = cells[-1].path(root / "ci")
    record = json.loads(path.read_text())

    # As if the cell had been trained with an older SAL default.
    settings = record["settings"]
    older = {**settings, "config": {**settings["config"], "patience": 7}}
    path.write_text(json.dumps({**record, "settings": older}))
    assert suite.finished_cells("ci", root / "ci") == cells[:-1]

    ran = []
    monkeypatch.setattr(
        suite, "run_cell", lambda s, cell, d, c, m: ran.append(cell) or record
    )
    assert suite.run_suite("ci", root=root, progress=False) == 1
    assert ran == [cells[-1]]
    assert suite.finished_cells("ci", root / "ci") == cells


def test_interrupted_cell_leaves_no_file(tmp_path, monkeypatch):
    def crash(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(suite, "run_cell", crash)
    monkeypatch.setitem(suite.LR_GRID, "adam", (3e-3,))
    with pytest.raises(KeyboardInterrupt):
        suite.run_suite("ci", root=tmp_path, progress=False)
    assert not list(tmp_path.glob("**/*.json*"))


def test_cell_paths_are_unique_over_the_full_grid():
    full = suite.SUITES["offline-full"]
    cells = suite.sweep_cells(full) + suite.grid_cells(full)
    assert len({c.path(suite.RESULTS_ROOT) for c in cells}) == len(cells)
    assert len(suite.grid_cells(full)) == 4 * 6 * 4 * 5 * 6 * 5


def test_restrict_rejects_values_outside_the_grid():
    with pytest.raises(ValueError, match="cifar10"):
        suite.restrict(suite.SUITES["offline-full"], datasets=("cifar10",))


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--suite", "offline-full", "--datasets", "cifar10"], "cifar10"),
        (["--suite", "ci", "--seeds", "0,x"], "--seeds"),
        (["--suite", "offline-full", "--datasets", "mnist"], "--data-dir"),
        (
            ["--suite", "ci", "--datasets", "nosuch", "--report-only"],
            "--datasets not in the suite: ['nosuch'] (it has digits)",
        ),
    ],
    ids=[
        "dataset-outside-grid",
        "bad-seed",
        "offline-npz-without-data-dir",
        "error-lists-the-valid-names",
    ],
)
def test_cli_rejects_bad_flags_before_writing(flags, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        suite.main([*flags, "--results-dir", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not list(tmp_path.iterdir())  # not even commands.txt


@pytest.mark.parametrize(
    ("make", "message"),
    [(False, "is not a folder"), (True, "no finished cells under")],
    ids=["missing-results-dir", "no-finished-cells"],
)
def test_report_only_without_results_exits_2(tmp_path, capsys, make, message):
    results_dir = tmp_path / "results"
    if make:
        (results_dir / "ci").mkdir(parents=True)
    document = tmp_path / "RESULTS.md"
    flags = ["--results-dir", str(results_dir), "--results-doc", str(document)]
    with pytest.raises(SystemExit) as exit_info:
        suite.main(["--suite", "ci", "--report-only", *flags])

    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert f"--results-dir {str(results_dir)!r}" in err and message in err, err
    assert not document.exists()


def test_online_suite_reads_tfds_except_the_npz_stand_in():
    online, offline = suite.SUITES["tfds"], suite.SUITES["offline-full"]
    assert suite.source_dir(online, "cifar10", "npz") is None
    assert suite.source_dir(online, "tiny_imagenet", "npz") == "npz"
    assert suite.source_dir(offline, "mnist", "npz") == "npz"
    assert suite.source_dir(offline, "digits", "npz") is None


def test_per_dataset_training_cap_reaches_config_and_data():
    capped = dataclasses.replace(
        suite.SUITES["ci"], train_examples_by_dataset={"digits": 120}
    )
    cell = suite.grid_cells(capped)[0]
    assert suite.config_of(capped, cell, 1e-3, None).max_train_examples == 120
    assert capped.train_examples("mnist1d") == capped.max_train_examples

    dataset = suite._load(capped, "digits", None)
    assert len(dataset.y_train) + len(dataset.y_val) == 120

    full = suite.SUITES["offline-full"]
    assert full.train_examples("fashion_mnist") == 10_000
    assert full.train_examples("mnist") is None


# optax's reduce_on_plateau, add_noise and sam mix int and float or bool and
# float internally, which strict promotion rejects.
@pytest.mark.standard_promotion
@pytest.mark.parametrize("method", peers.PEERS)
def test_every_peer_is_registered_and_steps(method):
    assert method in METHODS
    tx = make_optimizer(Config(), method, steps_per_epoch=2)
    params = {"w": jnp.ones(3)}
    state = tx.init(params)
    updates, _ = tx.update({"w": jnp.ones(3)}, state, params, value=1.0, accuracy=0.5)
    assert np.all(np.isfinite(updates["w"]))


@pytest.mark.standard_promotion
def test_sam_ascends_then_descends_from_the_same_point():
    # Two calls per batch: the first moves to the adversarial point, the
    # second comes back to the original parameters plus the descent update.
    tx = make_optimizer(Config(optimizer="sgd", momentum=0.0, learning_rate=0.1), "sam")
    params, grads = {"w": jnp.zeros(2)}, {"w": jnp.asarray([3.0, 4.0])}
    state = tx.init(params)

    ascent, state = tx.update(grads, state, params, value=0.0)
    np.testing.assert_allclose(
        ascent["w"], peers.SAM_RHO * np.array([0.6, 0.8]), rtol=1e-5
    )
    moved = {"w": params["w"] + ascent["w"]}
    descent, _ = tx.update(grads, state, moved, value=0.0)
    np.testing.assert_allclose(moved["w"] + descent["w"], [-0.3, -0.4], rtol=1e-5)
    assert peers.UPDATES_PER_BATCH["sam"] == 2


def test_bootstrap_interval_and_verdicts():
    mean, low, high = stats.bootstrap_ci([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and 1.0 <= low < mean < high <= 4.0
    assert stats.bootstrap_ci([0.5]) == (0.5, 0.5, 0.5)
    verdicts = [
        stats.verdict(0.1, 0.9),
        stats.verdict(-0.1, 0.9),
        stats.verdict(-2, -1),
    ]
    assert verdicts == [stats.WIN, stats.TIE, stats.LOSS]
    assert stats.count_verdicts(verdicts + [stats.WIN]) == "2/1/1"


def test_cli_regenerates_the_report_and_records_commands(finished, tmp_path):
    root, _ = finished
    document = tmp_path / "RESULTS.md"
    flags = ["--results-dir", str(root), "--results-doc", str(document)]
    suite.main(["--suite", "ci", *flags, "--report-only"])
    assert "## Benchmark suite: ci" in document.read_text()
    assert (root / "ci" / suite_report.SUMMARY_FILE).read_text().count("\n") == 3

    for _ in range(2):
        suite._record_command(tmp_path, ["--suite", "ci", "--seeds", "0"])
    lines = (tmp_path / suite.COMMANDS_FILE).read_text().splitlines()
    assert lines == ["python -m benchmarks.suite --suite ci --seeds 0"]


def _run(accuracy, elastic=0):
    return {"accuracy": accuracy, "num_elastic": elastic, "num_plastic": 0}


def test_effect_below_the_noise_floor_is_not_confirmed():
    # Idle SAL runs (no deformation) set the floor at about 0.5 points; the
    # deformed runs' +0.2 to +0.4 points lie above 0 but inside the floor.
    cell = ("d", "m", "adam", "shift")
    groups = {
        cell: {
            "baseline": {s: _run(0.9) for s in range(5)},
            "sal": {
                0: _run(0.905),
                1: _run(0.895),
                2: _run(0.902, elastic=1),
                3: _run(0.903, elastic=1),
                4: _run(0.904, elastic=1),
            },
        }
    }
    floor, runs = suite_report.noise_floor(groups)
    assert runs == 2 and abs(floor - 0.5) < 1e-6
    mean, low, high, active, total = suite_report.deformed_pooled(groups, ("shift",))[
        ("baseline", "shift")
    ]
    assert (active, total) == (3, 5) and 0 < low < high < floor
    assert suite_verdicts.judge(low, high, floor) == "not confirmed"
    assert suite_verdicts.judge(low, high, 0.0) == "confirmed"
    assert suite_verdicts.judge(-0.9, -0.6, floor) == "refuted"


def test_help_lists_each_axis_values_and_the_defaults(capsys):
    with pytest.raises(SystemExit) as exit_info:
        suite.main(["--help"])

    assert exit_info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: offline-quick)" in out
    for axis in suite.AXES:
        assert f"--{axis}" in out
    assert "the suites use mlp, lenet, resnet20, vgg11, mobilenetv2, vit" in out
    assert "the suites use adam, sgd, rmsprop, nadam" in out
