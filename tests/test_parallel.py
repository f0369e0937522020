"""Data-parallel training on 8 simulated CPU devices, in a child process."""

import json
import os
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import json
    import jax
    import numpy as np
    from benchmarks import parallel
    from benchmarks.config import Config
    from benchmarks.data import Dataset
    from benchmarks.train import Hooks, train_and_evaluate

    rng = np.random.default_rng(0)
    def split(n):
        x = rng.random((n, 12), dtype=np.float32)
        return x, rng.integers(0, 3, n).astype(np.int32)
    data = Dataset("toy", "test", 3, *split(64), *split(16), *split(16))
    config = Config(dataset="digits", model="mlp", hidden_sizes=(8,), epochs=1,
                    batch_size=16, sal_accuracy="none", progress=False)

    mesh = parallel.data_parallel_mesh()
    hooks = parallel.with_data_parallel(Hooks(), mesh)
    x, y = hooks.put_batch(data.x_train[:16], data.y_train[:16])
    try:
        hooks.put_batch(data.x_train[:12], data.y_train[:12])
        uneven = "accepted"
    except ValueError as err:
        uneven = str(err)

    sharded = train_and_evaluate(config, data, 0, method="sal", hooks=hooks)
    single = train_and_evaluate(config, data, 0, method="sal")
    kernel = sharded.model.hidden[0].kernel[...]
    print(json.dumps({
        "devices": jax.device_count(),
        "batch_devices": len(x.sharding.device_set),
        "batch_shard_rows": x.addressable_shards[0].data.shape[0],
        "params_replicated": kernel.sharding.is_fully_replicated,
        "params_devices": len(kernel.sharding.device_set),
        "uneven": uneven,
        "sharded_loss": [r["train_loss"] for r in sharded.history],
        "single_loss": [r["train_loss"] for r in single.history],
    }))
    """
)


def test_data_parallel_step_on_eight_devices():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
    env["JAX_PLATFORMS"] = "cpu"
    done = subprocess.run(
        [sys.executable, "-c", CHILD],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])

    assert out["devices"] == 8
    assert out["batch_devices"] == 8 and out["batch_shard_rows"] == 2
    assert out["params_replicated"] and out["params_devices"] == 8
    assert "multiple of the 8 devices" in out["uneven"]
    # The sharded step computes the same mean gradient as one device.
    for a, b in zip(out["sharded_loss"], out["single_loss"], strict=True):
        assert abs(a - b) < 1e-4
