"""Writes the README's short results summary from the committed result files.

Run from the repository root after any benchmark whose results it quotes::

    python -m benchmarks.summary

It reads ``benchmarks/results/main_job/compare/results.json``, the cell files
of the ``offline-quick`` and ``offline-full`` suites and
``benchmarks/results/overhead.json``, and replaces the ``readme-results``
section of ``README.md``; nothing in that section is typed by hand.
"""

import json
import pathlib

from benchmarks import report, results_doc

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MAIN_JOB = ROOT / "benchmarks" / "results" / "main_job" / "compare" / "results.json"
OVERHEAD = ROOT / "benchmarks" / "results" / "overhead.json"
SUITES = ("offline-quick", "offline-full")
SUITE_ROOT = ROOT / "benchmarks" / "results" / "suite"
SUITE_PEERS = ("baseline", "sam", "plateau")


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


def suite_summary(suite_name: str, records: list[dict]) -> str:
    """SAL minus its main peers on the runs where SAL deformed the model."""
    from benchmarks import suite_report

    groups = suite_report.by_group(records)
    floor, _ = suite_report.noise_floor(groups)
    pooled = suite_report.deformed_pooled(groups, ())
    parts = []
    for peer in SUITE_PEERS:
        mean, low, high, active, total = pooled[(peer, None)]
        parts.append(
            f"SAL − {peer} {mean:+.2f} points [{low:+.2f}, {high:+.2f}] "
            f"({active} of {total} runs)"
        )
    cells = sorted({"/".join(r[k] for k in ("dataset", "model", "optimizer"))
                    for r in records})  # fmt: skip
    regimes = list(dict.fromkeys(r["regime"] for r in records))
    return (
        f"**Benchmark suite {suite_name}** "
        f"(`python -m benchmarks.suite --suite {suite_name}`; "
        f"{', '.join(cells)}; regimes {', '.join(regimes)}): on the runs where "
        "SAL deformed the model, test accuracy at the "
        "best-validation epoch, mean and 95% bootstrap interval: "
        + "; ".join(parts)
        + ". "
        + _floor_sentence(floor)
        + " The verdict on each claim of the paper is in `benchmarks/RESULTS.md`."
    )


def _floor_sentence(floor: float) -> str:
    """What a difference must exceed before it says anything about SAL."""
    if floor == 0:
        return (
            "Where SAL never deformed the model, its runs matched the baseline's "
            "exactly here, so the noise floor is 0."
        )
    return (
        f"Differences below ±{floor:.2f} points are indistinguishable from the "
        "floating-point divergence of two compiled programs."
    )


def overhead_summary(overhead: dict) -> str:
    """The cost figures a user asks about first, as ratios."""
    step = overhead["optimizer"]["seconds"]
    training = overhead["training"]["seconds"]
    quiet = "adam + sal (no event)"
    plastic = step["adam + sal (plastic step)"] / step["adam + add_noise"]
    twice = step["adam + sal (spring-back + elastic step)"] / step["adam + add_noise"]

    def ratio(a, b):
        return f"{a / b:.2f}x"

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
    for suite_name in SUITES:
        if not (SUITE_ROOT / suite_name).is_dir():
            continue
        from benchmarks import suite_report

        records = suite_report.load_records(SUITE_ROOT / suite_name, suite_name)
        if records:
            parts.append(suite_summary(suite_name, records))
    if OVERHEAD.exists():
        parts.append(overhead_summary(json.loads(OVERHEAD.read_text())))
    return "\n\n".join(parts)


def main() -> None:
    results_doc.write_section("readme-results", render(), path=README)
    print(f"updated the results summary in {README.name}")


if __name__ == "__main__":
    main()
