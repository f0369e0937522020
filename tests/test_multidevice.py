"""Tests that data-parallel replicas take identical decisions (8 simulated devices)."""

import os
import pathlib
import subprocess
import sys
import textwrap

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Runs in a child process: the device count is fixed when JAX starts.
CHILD = textwrap.dedent(
    """
    import functools

    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    import sal_optax

    assert jax.device_count() == 8, jax.devices()
    WORKED_STRESS = [0, 1, 2, 3, 0, 0, 1, 2, 3, 0]


    def counters(state):
        found = sal_optax.find_state(state)
        names = ("stress", "num_elastic", "num_plastic", "num_spring_back")
        return {name: np.asarray(getattr(found, name)) for name in names}


    def check_mesh():
        mesh = Mesh(np.array(jax.devices()), ("data",))
        replicated = NamedSharding(mesh, P())
        rows = NamedSharding(mesh, P("data"))
        # Learning rate 0: only sal's plastic events (evaluations 2, 4, 6) move w.
        tx = optax.chain(
            optax.sgd(0.0), sal_optax.sal(patience=1, yield_stress=1, key=3)
        )
        params = jax.device_put({"w": jnp.linspace(-1.0, 1.0, 12).reshape(4, 3)},
                                replicated)
        state = jax.device_put(tx.init(params), replicated)
        x = jax.device_put(jnp.linspace(0.0, 1.0, 64).reshape(16, 4), rows)
        y = jax.device_put(jnp.linspace(1.0, 0.0, 48).reshape(16, 3), rows)

        @jax.jit
        def step(params, state, x, y):
            def loss_fn(p):
                return jnp.mean((x @ p["w"] - y) ** 2)

            loss, grads = jax.value_and_grad(loss_fn)(params)
            updates, state = tx.update(grads, state, params, value=loss)
            return optax.apply_updates(params, updates), state

        w0 = np.asarray(params["w"])
        for _ in range(6):
            params, state = step(params, state, x, y)
        assert int(counters(state)["num_plastic"]) == 3, counters(state)
        shards = [np.asarray(s.data) for s in params["w"].addressable_shards]
        assert len(shards) == 8
        for shard in shards[1:]:
            np.testing.assert_array_equal(shard, shards[0])
        assert not np.array_equal(shards[0], w0)
        print("OK-mesh")


    def check_pmap():
        n = 8
        tx = optax.chain(
            optax.sgd(0.1),
            sal_optax.sal(patience=2, yield_stress=4, rtol=0.0, atol=0.0,
                          axis_name="i", key=5),
        )
        # Replicas see different losses whose finite mean is always 1.0; the last
        # one sees NaN. Each replica alone would see improvements (or nothing).
        offsets = np.array([-3, -2, -1, 0, 1, 2, 3, 0], np.float32) / 4

        @functools.partial(jax.pmap, axis_name="i")
        def step(params, state, value):
            grads = jax.tree.map(jnp.zeros_like, params)
            updates, state = tx.update(grads, state, params, value=value)
            return optax.apply_updates(params, updates), state

        # Replicated on the host: a pmapped init would cost one more compilation.
        one = {"w": np.linspace(-1.0, 1.0, 6, dtype=np.float32)}
        replicate = functools.partial(jax.tree.map, lambda x: np.stack([x] * n))
        params = replicate(one)
        state = replicate(jax.device_get(tx.init(one)))
        for t in range(10):
            values = 1.0 + offsets * (1 if t % 2 else -1)
            values[-1] = np.nan
            params, state = step(params, state, jnp.asarray(values))
            stress = counters(state)["stress"]
            assert np.all(stress == WORKED_STRESS[t]), (t, stress)
        final = counters(state)
        for name, expected in (("num_elastic", 4), ("num_spring_back", 4),
                               ("num_plastic", 2)):
            assert np.all(final[name] == expected), (name, final[name])
        w = np.asarray(params["w"])
        for replica in w[1:]:
            np.testing.assert_array_equal(replica, w[0])
        # Zero gradients: only the plastic deformations moved the parameters.
        assert not np.array_equal(w[0], one["w"])
        print("OK-pmap")


    check_mesh()
    check_pmap()
    """
)


def test_replicas_take_identical_decisions(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT), env.get("PYTHONPATH")])
    )

    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK-mesh" in result.stdout
    assert "OK-pmap" in result.stdout
