"""Parameter trajectories projected on their first two principal components."""

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import matplotlib.pyplot as plt
import numpy as np

_EVENT_MARKERS = {
    "elastic": ("o", "tab:orange"),
    "spring back": ("v", "tab:green"),
    "plastic": ("X", "tab:red"),
}


class Projection(NamedTuple):
    """A trajectory in the plane of its first principal components."""

    coords: np.ndarray  # float64[num_snapshots, k]: coordinates, final point at 0
    components: np.ndarray  # float64[k, num_params]: orthonormal directions
    explained: np.ndarray  # float64[k]: fraction of the variance per component


def project(snapshots: np.ndarray, num_components: int = 2) -> Projection:
    """Projects flattened parameter snapshots on their principal components.

    As in Li et al. (2018, section 7), the origin is the final snapshot: the
    rows ``theta_i - theta_final`` are centred for the PCA and then projected,
    so the trajectory ends at ``(0, 0)``.

    Args:
      snapshots: array of shape ``(num_snapshots, num_params)``, one row per
        recorded point of training, the last row the final parameters.
      num_components: number of components kept (<= num_snapshots - 1).

    Returns:
      A :class:`Projection`.
    """
    snapshots = np.asarray(snapshots, np.float64)
    if snapshots.ndim != 2 or not 1 <= num_components < len(snapshots):
        raise ValueError(
            "expected snapshots of shape (num_snapshots, num_params) with "
            f"num_snapshots > {num_components=}, got shape {snapshots.shape}"
        )

    offsets = snapshots - snapshots[-1]
    centred = offsets - offsets.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    explained = singular**2 / max(np.sum(singular**2), 1e-300)

    components = vt[:num_components]
    return Projection(offsets @ components.T, components, explained[:num_components])


def event_indices(counts: Sequence[int]) -> list[int]:
    """Returns the snapshots at which a cumulative event counter grew.

    Args:
      counts: cumulative counter per snapshot (e.g. ``num_plastic`` per epoch).

    Returns:
      Indices ``i`` with ``counts[i] > counts[i - 1]`` (and ``counts[0] > 0``).
    """
    counts = np.asarray(counts)
    grew = np.diff(counts, prepend=0) > 0
    return [int(i) for i in np.flatnonzero(grew)]


def plot_trajectories(
    projections: Mapping[str, Projection],
    events: Mapping[str, Mapping[str, Sequence[int]]],
    path: str,
) -> None:
    """Draws each projected trajectory with its events marked.

    Args:
      projections: method name to its :class:`Projection`.
      events: method name to ``{kind: snapshot indices}``, the kinds being
        elastic, spring back and plastic (e.g. from :func:`event_indices`).
      path: PNG file to write.
    """
    fig, axes = plt.subplots(1, len(projections), figsize=(4.6 * len(projections), 4.2))
    axes = np.atleast_1d(axes)

    for ax, (name, proj) in zip(axes, projections.items(), strict=True):
        x, y = proj.coords[:, 0], proj.coords[:, 1]
        ax.plot(x, y, "-", color="0.4", lw=1)
        ax.scatter(x, y, c=np.arange(len(x)), cmap="Blues", s=14, zorder=2)
        ax.plot(x[0], y[0], "ks", label="first snapshot")
        ax.plot(0, 0, "k*", ms=11, label="final")
        for kind, idx in events.get(name, {}).items():
            marker, color = _EVENT_MARKERS[kind]
            label = f"{kind} ({len(idx)})"
            ax.scatter(x[idx], y[idx], marker=marker, color=color, s=60, label=label)
        pc1, pc2 = 100 * proj.explained[:2]
        ax.set(title=name, xlabel=f"PC1 ({pc1:.1f}%)", ylabel=f"PC2 ({pc2:.1f}%)")
        ax.legend(fontsize=7)

    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
