"""Writes the README's short results summary from the committed result files.

Run from the repository root after any benchmark whose results it quotes::

    python -m benchmarks.summary

It reads ``benchmarks/results/main_job/compare/results.json`` and
``benchmarks/results/overhead.json`` and replaces the ``readme-results``
section of ``README.md``; nothing in that section is typed by hand.
"""

import json
import pathlib

from benchmarks import report, results_doc

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MAIN_JOB = ROOT / "benchmarks" / "results" / "main_job" / "compare" / "results.json"
OVERHEAD = ROOT / "benchmarks" / "results" / "overhead.json"


def main_job_summary(results: dict) -> str:
    """The main job's table, with the setting and the hardware it ran on."""
    config, hardware = results["config"], results["hardware"]
    seeds = ", ".join(str(seed) for seed in results["seeds"])
    return "\n\n".join(
        [
            f"**Main job** (`python -m benchmarks.compare`): {config['dataset']}, "
            f"{config['model']}, {config['optimizer']} {config['learning_rate']}, "
            f"{config['epochs']} epochs, seeds {seeds}; test accuracy in %, "
            "mean ± std over seeds; events per run.",
            report.format_table(results, markdown=True),
            f"Hardware: {hardware.get('processor', '?')}, "
            f"{hardware.get('cpu_count', '?')} CPU cores, JAX on "
            f"{hardware.get('jax_backend', '?')}.",
        ]
    )


def overhead_summary(overhead: dict) -> str:
    """The cost figures a user asks about first, as ratios."""
    step = overhead["optimizer"]["seconds"]
    training = overhead["training"]["seconds"]
    quiet = "adam + sal (no event)"
    plastic = step["adam + sal (plastic step)"] / step["adam + add_noise"]
    twice = step["adam + sal (spring-back + elastic step)"] / step["adam + add_noise"]
    ratio = lambda a, b: f"{a / b:.2f}x"  # noqa: E731
    return (
        f"**Cost** (`python -m benchmarks.overhead`, "
        f"{overhead['environment']['machine']}): an optimizer step without an "
        f"event costs {ratio(step[quiet], step['adam'])} plain Adam's and "
        f"{ratio(step[quiet], step['adam + bare gate'])} a bare `lax.cond` gate's "
        f"on {overhead['optimizer']['num_params']:,} ResNet-18-shaped parameters; "
        f"a full training step of the benchmark CNN costs "
        f"{ratio(training[quiet], training['adam'])} plain Adam's. An event step "
        f"costs {plastic:.2f}x (plastic) to {twice:.2f}x (spring-back and "
        "elastic) an `optax.add_noise` step."
    )


def render() -> str:
    """The README section, from whichever result files exist."""
    parts = []
    if MAIN_JOB.exists():
        parts.append(main_job_summary(report.read_results(MAIN_JOB)))
    if OVERHEAD.exists():
        parts.append(overhead_summary(json.loads(OVERHEAD.read_text())))
    return "\n\n".join(parts)


def main() -> None:
    results_doc.write_section("readme-results", render(), path=README)
    print(f"updated the results summary in {README.name}")


if __name__ == "__main__":
    main()
