"""Cost of ``sal`` against plain Adam: optimizer-only steps and full training steps.

Run from the repository root::

    python -m benchmarks.overhead            # about 3 minutes on 2 CPU cores
    python -m benchmarks.overhead --quick    # a smoke run, seconds; writes nothing

It prints a table and, unless ``--no-write``, stores the figures in
``benchmarks/results/overhead.json`` and the "Overhead" section of
``benchmarks/RESULTS.md``. Variants are timed interleaved, round by round, so
that drift of the machine affects all of them alike; the first round is an
untimed warm-up and each figure is the median over the other rounds.
"""

import argparse
import json
import os
import pathlib
import platform
import tempfile
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import sal_optax
from benchmarks import results_doc

RESULTS_JSON = pathlib.Path(__file__).with_name("results") / "overhead.json"
LEARNING_RATE = 1e-3
NEVER = 10**9  # a patience no run reaches: sal decides but never deforms
BATCH_SIZE = 128
IMAGE_SHAPE = (28, 28, 1)


def resnet18_shapes() -> list[tuple[int, ...]]:
    """Shapes of ResNet-18's parameters (ImageNet head): 62 leaves, 11.7M values."""
    shapes: list[tuple[int, ...]] = [(7, 7, 3, 64), (64,), (64,)]
    channels_in = 64
    for channels in (64, 128, 256, 512):
        for block in range(2):
            first_in = channels_in if block == 0 else channels
            shapes += [(3, 3, first_in, channels), (channels,), (channels,)]
            shapes += [(3, 3, channels, channels), (channels,), (channels,)]
            if block == 0 and channels_in != channels:
                shapes += [(1, 1, channels_in, channels), (channels,), (channels,)]
        channels_in = channels
    return shapes + [(512, 1000), (1000,)]


def bare_gate() -> optax.GradientTransformation:
    """A ``lax.cond`` around the updates that never fires: the cost floor of a gate.

    Its predicate is data-dependent (the step count), like ``sal``'s, so XLA
    cannot remove the conditional.
    """

    def init_fn(params):
        del params
        return optax.ScaleByScheduleState(count=jnp.zeros((), jnp.int32))

    def update_fn(updates, state, params=None):
        del params
        fires = state.count < 0
        updates = jax.lax.cond(
            fires, lambda u: jax.tree.map(lambda x: 2 * x, u), lambda u: u, updates
        )
        return updates, optax.ScaleByScheduleState(count=state.count + 1)

    return optax.GradientTransformation(init_fn, update_fn)


def optimizer_variants() -> dict[str, tuple[Any, int]]:
    """The optimizers compared, with the warm-up steps that bring ``sal`` to its case.

    Every step is timed from the same inputs, so a state prepared to deform on
    its next update times an event step on every call.
    """
    adam = optax.adam(LEARNING_RATE)
    extra = optax.with_extra_args_support
    never = sal_optax.sal(patience=NEVER, yield_stress=NEVER)
    # With a constant loss, the first evaluation sets the best loss; with
    # patience = yield = 1 the second one is plastic (a single draw).
    plastic = sal_optax.sal(patience=1, yield_stress=1, plastic_scale=1e-3)
    # With patience 1 and no yield, the second evaluation is elastic and every
    # later one springs back and deforms again (two draws).
    elastic = sal_optax.sal(patience=1, yield_stress=NEVER, noise_scale=1e-3)
    return {
        "adam": (extra(adam), 0),
        "adam + bare gate": (extra(optax.chain(adam, bare_gate())), 0),
        "adam + sal (no event)": (optax.chain(adam, never), 0),
        "adam + sal (plastic step)": (optax.chain(adam, plastic), 1),
        "adam + sal (spring-back + elastic step)": (optax.chain(adam, elastic), 2),
        "adam + add_noise": (
            extra(optax.chain(adam, optax.add_noise(1e-3, 0.55, 0))),
            0,
        ),
    }


def optimizer_step(tx: Any) -> Callable:
    """Returns the jitted optimizer-only step: update, then apply the updates."""

    def step(params, opt_state, grads):
        updates, opt_state = tx.update(grads, opt_state, params, value=1.0)
        return optax.apply_updates(params, updates), opt_state

    return jax.jit(step)


def prepare(tx: Any, warmup_steps: int, params: Any, grads: Any) -> Any:
    """Returns an optimizer state after ``warmup_steps`` steps on fixed inputs."""
    opt_state = tx.init(params)
    step = optimizer_step(tx)
    for _ in range(warmup_steps):
        _, opt_state = step(params, opt_state, grads)
    return opt_state


def interleaved_medians(
    calls: dict[str, Callable[[], Any]], rounds: int, repeats: int
) -> dict[str, float]:
    """Times each call ``repeats`` times per round, variants interleaved.

    Returns the median seconds per call over the rounds, the first round
    (compilation, caches) excluded.
    """
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for round_index in range(rounds + 1):
        for name, call in calls.items():
            start = time.perf_counter()
            for _ in range(repeats):
                jax.block_until_ready(call())
            if round_index > 0:
                samples[name].append((time.perf_counter() - start) / repeats)
    return {name: float(np.median(times)) for name, times in samples.items()}


def measure_optimizer(rounds: int, repeats: int, scale: float) -> dict[str, Any]:
    """Optimizer-only step times on ResNet-18-shaped parameters."""
    rng = np.random.default_rng(0)
    shapes = resnet18_shapes()
    if scale != 1.0:
        shapes = [tuple(max(1, int(d * scale)) for d in s) for s in shapes]
    params = {
        f"layer{i:02d}": jnp.asarray(rng.normal(0, 0.05, s), jnp.float32)
        for i, s in enumerate(shapes)
    }
    grads = jax.tree.map(lambda p: 0.1 * p, params)

    calls, compiled, state_bytes = {}, {}, None
    for name, (tx, warmup) in optimizer_variants().items():
        opt_state = prepare(tx, warmup, params, grads)
        step = optimizer_step(tx)
        calls[name] = lambda s=step, o=opt_state: s(params, o, grads)
        compiled[name] = step
        if "no event" in name:
            sal_state = sal_optax.find_state(opt_state)
            state_bytes = sum(leaf.nbytes for leaf in jax.tree.leaves(sal_state))
    seconds = interleaved_medians(calls, rounds, repeats)
    variants = optimizer_variants()
    return {
        "compile_seconds": {
            name: compile_seconds(variants[name][0], params, grads)
            for name in ("adam", "adam + sal (no event)")
        },
        "num_params": int(sum(np.prod(s) for s in shapes)),
        "num_leaves": len(shapes),
        "seconds": seconds,
        "compilations": {name: step._cache_size() for name, step in compiled.items()},
        "sal_state_bytes": state_bytes,
    }


def measure_training(rounds: int, repeats: int) -> dict[str, Any]:
    """Full training step (forward, backward, update) of the benchmark CNN.

    The step is the one users write: ``nnx.Optimizer`` under ``nnx.jit``. Its
    state advances on every call, so only the step without events is timed
    here; event steps are timed optimizer-only above.
    """
    from flax import nnx

    from benchmarks import models

    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.normal(size=(BATCH_SIZE, *IMAGE_SHAPE)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 10, BATCH_SIZE))

    @nnx.jit
    def train_step(model, optimizer):
        def loss_fn(model):
            logits = model(images)
            return optax.softmax_cross_entropy_with_integer_labels(
                logits, labels
            ).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads, value=loss)
        return loss

    variants = optimizer_variants()
    calls, num_params = {}, 0
    for name in ("adam", "adam + sal (no event)"):
        model = models.make_model("cnn", IMAGE_SHAPE, 10, rngs=nnx.Rngs(0))
        optimizer = nnx.Optimizer(model, variants[name][0], wrt=nnx.Param)
        calls[name] = lambda m=model, o=optimizer: train_step(m, o)
        num_params = models.count_params(model)
    return {
        "model": "cnn",
        "num_params": int(num_params),
        "batch_size": BATCH_SIZE,
        "input_shape": list(IMAGE_SHAPE),
        "seconds": interleaved_medians(calls, rounds, repeats),
    }


def compile_seconds(tx: Any, params: Any, grads: Any) -> float:
    """Seconds XLA takes to compile the optimizer-only step."""
    opt_state = tx.init(params)
    start = time.perf_counter()
    optimizer_step(tx).lower(params, opt_state, grads).compile()
    return time.perf_counter() - start


def environment() -> dict[str, str]:
    """Hardware and versions, kept next to every figure."""
    import flax

    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "processor": platform.processor() or "unknown",
        "backend": jax.default_backend(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "optax": optax.__version__,
        "flax": flax.__version__,
        # Other work on the machine inflates every figure alike; the ratios
        # of interleaved rounds are what to compare.
        "load average (1 min) at start": f"{os.getloadavg()[0]:.1f}",
    }


def ratio_rows(
    seconds: dict[str, float], pairs: list[tuple[str, str]]
) -> list[list[str]]:
    """Table rows: variant, its median time, and its ratio to a reference."""
    rows = []
    for name, reference in pairs:
        ratio = seconds[name] / seconds[reference]
        rows.append([name, f"{seconds[name] * 1e3:.2f}", reference, f"{ratio:.3f}x"])
    return rows


def render(results: dict[str, Any], command: str) -> str:
    """The Markdown section of RESULTS.md for these results."""
    optimizer, training = results["optimizer"], results["training"]
    header = ["variant", "median ms / step", "compared with", "ratio"]
    optimizer_rows = ratio_rows(
        optimizer["seconds"],
        [
            ("adam + bare gate", "adam"),
            ("adam + sal (no event)", "adam"),
            ("adam + sal (no event)", "adam + bare gate"),
            ("adam + sal (plastic step)", "adam"),
            ("adam + sal (plastic step)", "adam + add_noise"),
            ("adam + sal (spring-back + elastic step)", "adam"),
            ("adam + sal (spring-back + elastic step)", "adam + add_noise"),
        ],
    )
    training_rows = ratio_rows(training["seconds"], [("adam + sal (no event)", "adam")])
    env = ", ".join(f"{k} {v}" for k, v in results["environment"].items())
    return "\n\n".join(
        [
            "## Overhead",
            f"Generated by `{command}`. Environment: {env}.",
            f"Optimizer-only step (update + apply_updates) on ResNet-18-shaped "
            f"parameters: {optimizer['num_params']:,} float32 values in "
            f"{optimizer['num_leaves']} leaves. Median of {results['rounds']} "
            f"interleaved rounds of {results['repeats']} calls.",
            results_doc.markdown_table(header, optimizer_rows),
            f"Full training step (forward, backward, update) of the benchmark "
            f"`{training['model']}` ({training['num_params']:,} parameters, "
            f"batch {training['batch_size']} of {tuple(training['input_shape'])}):",
            results_doc.markdown_table(header, training_rows),
            f"Compiled functions per variant: {optimizer['compilations']}. "
            "Compilation of the optimizer-only step: "
            + ", ".join(
                f"{k} {v:.1f} s" for k, v in optimizer["compile_seconds"].items()
            )
            + ". "
            f"`SALState` size for this model: {optimizer['sal_state_bytes']} bytes "
            "(scalars, a key and one float32 per leaf; no parameter-sized buffer).",
        ]
    )


def write_json(path: pathlib.Path, payload: dict[str, Any]) -> None:
    """Writes JSON under a temporary name, then renames it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(handle, "w") as file:
        json.dump(payload, file, indent=2)
    os.replace(temporary, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds")
    parser.add_argument("--repeats", type=int, default=5, help="calls per round")
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes and rounds (smoke test)"
    )
    parser.add_argument(
        "--no-write", action="store_true", help="print only; write no result file"
    )
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.repeats < 1:
        parser.error(
            f"--rounds and --repeats must be >= 1, got {args.rounds}, {args.repeats}"
        )

    rounds, repeats = (2, 1) if args.quick else (args.rounds, args.repeats)
    results = {
        "rounds": rounds,
        "repeats": repeats,
        "environment": environment(),
        "optimizer": measure_optimizer(rounds, repeats, 0.05 if args.quick else 1.0),
        "training": measure_training(rounds, repeats),
    }
    command = "python -m benchmarks.overhead" + (" --quick" if args.quick else "")
    section = render(results, command)
    print(section)
    # A smoke run's figures are not measurements: never store them.
    if not (args.no_write or args.quick):
        write_json(RESULTS_JSON, results)
        results_doc.write_section("overhead", section)


if __name__ == "__main__":
    main()
