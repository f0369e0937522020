"""Data parallelism of the suite with JAX's own sharding, single- or multi-host.

With more than one device, the training batch is sharded over a one-axis
``Mesh`` (``"data"``) and the model and optimizer state are replicated; the
jitted train step is unchanged, and XLA inserts the gradient all-reduce. On a
cluster, set ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and
``JAX_PROCESS_ID`` in every process (or run under a scheduler that
``jax.distributed.initialize`` detects by itself, with ``SAL_BENCH_DISTRIBUTED=1``):
every process runs the same grid, feeds its own slice of each global batch,
and only process 0 writes result files. The processes must share the results
folder (a network file system): each reads the learning-rate sweep's files,
and all of them wait at a barrier after every cell is written.

.. warning:: Evaluation is not sharded: numpy splits go to a replicated
   model, so every device evaluates the whole split (cheap at these sizes).
   The multi-host path is written to JAX's documented API but was only tested
   here with 8 simulated devices in one process (``tests/test_parallel.py``).
"""

import dataclasses
import os

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from benchmarks.train import Hooks

DATA_AXIS = "data"
_ENV_ADDRESS = "JAX_COORDINATOR_ADDRESS"
_ENV_AUTO = "SAL_BENCH_DISTRIBUTED"


def initialize_from_environment() -> bool:
    """Starts ``jax.distributed`` when the environment asks for it.

    Returns:
      True when this is a multi-process run.
    """
    if os.environ.get(_ENV_ADDRESS):
        jax.distributed.initialize(
            coordinator_address=os.environ[_ENV_ADDRESS],
            num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
            process_id=int(os.environ["JAX_PROCESS_ID"]),
        )
    elif os.environ.get(_ENV_AUTO) == "1":
        jax.distributed.initialize()
    return jax.process_count() > 1


def data_parallel_mesh(devices=None) -> Mesh | None:
    """A one-axis mesh over all devices; None on a single device."""
    devices = jax.devices() if devices is None else devices
    if len(devices) < 2:
        return None
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def with_data_parallel(hooks: Hooks, mesh: Mesh) -> Hooks:
    """Adds to ``hooks`` the replication of the state and the batch sharding."""
    replicated = NamedSharding(mesh, PartitionSpec())
    sharded = NamedSharding(mesh, PartitionSpec(DATA_AXIS))

    def place_state(model: nnx.Module, optimizer: nnx.Optimizer) -> None:
        state = nnx.state((model, optimizer))
        nnx.update((model, optimizer), jax.device_put(state, replicated))

    def put_batch(x: np.ndarray, y: np.ndarray) -> tuple[jax.Array, jax.Array]:
        if len(y) % mesh.size:
            raise ValueError(
                f"batch_size must be a multiple of the {mesh.size} devices, "
                f"got {len(y)}"
            )
        # Each process holds the same global batch and feeds only its slice.
        share = len(y) // jax.process_count()
        mine = slice(jax.process_index() * share, (jax.process_index() + 1) * share)
        return tuple(
            jax.make_array_from_process_local_data(sharded, a[mine], a.shape)
            for a in (x, y)
        )

    return dataclasses.replace(hooks, place_state=place_state, put_batch=put_batch)


def wait_for_all(name: str) -> None:
    """Blocks until every process reaches the barrier ``name`` (multi-host only)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def is_writer() -> bool:
    """Only the first process writes result files."""
    return jax.process_index() == 0


def describe(mesh: Mesh | None) -> dict:
    """Devices of a run, for its result file."""
    return {
        "platform": jax.devices()[0].platform,
        "data_parallel_devices": 1 if mesh is None else int(mesh.size),
        "processes": jax.process_count(),
    }
