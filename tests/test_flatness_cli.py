"""End-to-end test of ``python -m benchmarks.flatness`` on a tiny offline run."""

import json

import numpy as np
import pytest
import scipy.stats

from benchmarks import compare, flatness, flatness_report

_TINY_RUN = [
    "--dataset", "digits", "--model", "mlp", "--epochs", "3", "--batch-size", "64",
    "--seeds", "0,1", "--max-train-examples", "300", "--max-test-examples", "100",
    "--patience", "1", "--yield-stress", "2", "--atol", "1.0", "--no-progress",
]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    assert compare.main([*_TINY_RUN, "--output-dir", str(out), "--run-name", "t"]) == 0
    return out / "t"


@pytest.fixture(scope="module")
def analysis(tiny_run):
    flags = ["--run-dir", str(tiny_run), "--seeds", "0,1", "--num-examples", "64",
             "--grid", "3", "--lanczos-iters", "5", "--power-iters", "5",
             "--trace-samples", "4"]  # fmt: skip
    assert flatness.main(flags) == 0
    return tiny_run / "flatness"


def test_cli_writes_numbers_and_figures(analysis):
    names = {p.name for p in analysis.iterdir()}

    assert {"flatness.json", "landscape.npz", "trajectory.npz"} <= names
    assert {"landscape_train.png", "landscape_test.png", "landscape_1d.png"} <= names
    assert {"trajectory.png", "sharpness.png"} <= names


def test_retraining_reproduces_the_run(analysis):
    summary = json.loads((analysis / "flatness.json").read_text())

    assert summary["all_reproduced"]
    assert [(r["method"], r["seed"]) for r in summary["runs"]] == [
        ("baseline", 0), ("baseline", 1), ("sal", 0), ("sal", 1),
    ]  # fmt: skip
    for row in summary["runs"]:
        lanczos = row["sharpness"]["lanczos"]
        assert lanczos["num_iters"] == len(lanczos["history"]) <= 5
        assert np.isfinite(row["sharpness"]["trace"]["stderr"])
    rho = summary["spearman_sharpness_vs_test_accuracy"]["lambda_max"]
    sharp = [r["sharpness"]["lanczos"]["max_eigenvalue"] for r in summary["runs"]]
    accuracy = [r["test_accuracy"] for r in summary["runs"]]
    expected = scipy.stats.spearmanr(sharp, accuracy).statistic
    assert rho["n"] == 4
    assert rho["rho"] == pytest.approx(expected) or np.isnan(expected)


def test_landscape_arrays_have_grid_shape_and_centre_value(analysis):
    arrays = np.load(analysis / "landscape.npz")
    summary = json.loads((analysis / "flatness.json").read_text())

    for method in ("baseline", "sal"):
        assert arrays[f"{method}/train_loss_2d"].shape == (3, 3)
        assert arrays[f"{method}/test_accuracy_1d"].shape == (flatness.LINE_POINTS,)
    # The centre of the plane is the trained model itself: its accuracy on the
    # fixed training subset is that of a model that has learnt something.
    assert np.isfinite(arrays["baseline/train_loss_2d"]).all()
    assert arrays["baseline/train_accuracy_2d"][1, 1] > 0.2
    assert summary["runs"][0]["test_accuracy"] > 0.2


def test_trajectory_has_one_point_per_epoch_plus_init(analysis):
    arrays = np.load(analysis / "trajectory.npz")

    assert arrays["sal/coords"].shape == (4, 2)
    np.testing.assert_allclose(arrays["sal/coords"][-1], 0.0, atol=1e-9)
    # --atol 1.0 makes every evaluation after the first stagnate: SAL deforms.
    assert arrays["sal/elastic"].size + arrays["sal/plastic"].size >= 1
    assert arrays["baseline/elastic"].size == arrays["baseline/plastic"].size == 0


@pytest.mark.parametrize(
    "flags, message",
    [(["--trace-samples", "1"], "--trace-samples"), (["--seeds", "7"], "--seeds")],
    ids=["one-probe", "seed-not-in-run"],
)
def test_bad_flags_stop_before_any_work(tiny_run, tmp_path, capsys, flags, message):
    out = tmp_path / "flatness"
    with pytest.raises(SystemExit) as exit_info:
        flatness.main(["--run-dir", str(tiny_run), "--out", str(out), *flags])

    assert exit_info.value.code == flatness.USAGE_ERROR
    assert message in capsys.readouterr().err
    assert not out.exists()


# Retrains with optax's Adam, which mixes int and float internally.
@pytest.mark.standard_promotion
def test_a_new_analysis_replaces_the_whole_folder(tiny_run, tmp_path):
    out = tmp_path / "flatness"
    out.mkdir()
    (out / "landscape.npz").write_bytes(b"from an older analysis")
    flags = ["--run-dir", str(tiny_run), "--out", str(out), "--seeds", "0",
             "--num-examples", "32", "--lanczos-iters", "3", "--power-iters", "3",
             "--trace-samples", "2", "--no-landscape"]  # fmt: skip

    assert flatness.main(flags) == 0
    assert not (out / "landscape.npz").exists()
    assert (out / "flatness.json").exists() and (out / "trajectory.png").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["flatness"]  # no work folder


PROG = "python -m benchmarks.flatness: error: "


def _usage_error(capsys, argv) -> str:
    """Runs the CLI, checks it exits 2 with one line, returns the message."""
    with pytest.raises(SystemExit) as exit_info:
        flatness.main(argv)

    assert exit_info.value.code == flatness.USAGE_ERROR
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(PROG), err
    return err.removeprefix(PROG)


def test_missing_results_file_is_a_usage_error(tmp_path, capsys):
    message = _usage_error(capsys, ["--run-dir", str(tmp_path)])
    assert message == f"--run-dir {str(tmp_path)!r} has no results.json\n"


def test_render_of_a_missing_folder_is_a_usage_error(tmp_path, capsys):
    missing = str(tmp_path / "nowhere")
    message = _usage_error(capsys, ["--render", missing])
    assert f"--render {missing!r}" in message and "flatness.json" in message


def test_bad_seed_list_names_the_flag_and_value(capsys):
    message = _usage_error(capsys, ["--seeds", "x"])
    assert message == "argument --seeds: expected integers like 0,1,2, got 'x'\n"


def test_a_run_too_short_for_a_trajectory_stops_before_retraining(
    tiny_run, tmp_path, capsys, monkeypatch
):
    # A copy of the tiny run's results.json, as if it had been that short.
    results = json.loads((tiny_run / "results.json").read_text())
    results["config"]["epochs"] = 1
    (tmp_path / "results.json").write_text(json.dumps(results))

    def must_not_retrain(*args, **kwargs):
        raise AssertionError("retrained a run too short for its trajectory")

    monkeypatch.setattr(flatness, "retrain", must_not_retrain)
    message = _usage_error(capsys, ["--run-dir", str(tmp_path)])
    assert "at least 2 epochs" in message and "epochs=1" in message, message
    assert not (tmp_path / "flatness").exists()


def test_spearman_bootstrap_on_monotone_data():
    c = flatness_report.spearman_bootstrap([1, 2, 3, 4, 5], [5, 4, 3, 2, 1])

    assert c["rho"] == pytest.approx(-1.0)
    assert c["ci_low"] == pytest.approx(-1.0) and c["ci_high"] == pytest.approx(-1.0)
    assert flatness_report.spearman_bootstrap([1, 2], [2, 1])["ci_low"] is None
