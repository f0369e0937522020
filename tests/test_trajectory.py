"""Tests of the principal-component projection of parameter trajectories."""

import numpy as np
import pytest

from benchmarks import trajectory


def test_projection_of_planar_trajectory_is_exact():
    rng = np.random.default_rng(0)
    basis, _ = np.linalg.qr(rng.normal(size=(50, 2)))
    plane = rng.normal(size=(12, 2)) * [5.0, 1.0]
    snapshots = 3.0 + plane @ basis.T

    proj = trajectory.project(snapshots)

    np.testing.assert_allclose(proj.coords[-1], 0.0, atol=1e-12)
    np.testing.assert_allclose(proj.coords @ proj.components, snapshots - snapshots[-1],
                               atol=1e-10)  # fmt: skip
    np.testing.assert_allclose(proj.explained.sum(), 1.0, rtol=1e-10)
    assert proj.explained[0] > proj.explained[1]
    np.testing.assert_allclose(
        proj.components @ proj.components.T, np.eye(2), atol=1e-12
    )


def test_straight_line_has_one_component():
    snapshots = np.outer(np.arange(6.0), np.ones(10))

    proj = trajectory.project(snapshots)

    np.testing.assert_allclose(proj.explained, [1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(
        np.abs(proj.coords[:, 0]), np.sqrt(10) * (5 - np.arange(6))
    )


def test_project_rejects_too_few_snapshots():
    with pytest.raises(ValueError, match="num_snapshots"):
        trajectory.project(np.ones((2, 5)))


def test_event_indices_marks_growth_of_counter():
    assert trajectory.event_indices([0, 0, 1, 1, 3, 3]) == [2, 4]
    assert trajectory.event_indices([1, 1]) == [0]


def test_plot_trajectories_writes_png(tmp_path):
    proj = trajectory.project(np.random.default_rng(0).normal(size=(8, 20)))
    path = tmp_path / "t.png"

    trajectory.plot_trajectories(
        {"sal": proj, "baseline": proj},
        {"sal": {"elastic": [1, 3], "plastic": [5]}},
        str(path),
    )

    assert path.stat().st_size > 0
