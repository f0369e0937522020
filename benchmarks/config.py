"""Every hyperparameter of the main job, named in one frozen dataclass."""

import dataclasses
from typing import Any

SAL_POSITIONS = ("last", "first", "both")
SAL_ACCURACY_SOURCES = ("val", "train", "none")


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings of one comparison: data, model, base optimizer, SAL, outputs.

    The defaults are the main job (``python -m benchmarks.compare``). The SAL
    defaults were picked by ``benchmarks/sweep_defaults.py`` on the validation
    split of MNIST-1D; see the "Main job" section of ``benchmarks/RESULTS.md``.
    """

    # Data.
    dataset: str = "mnist1d"
    data_dir: str | None = None
    val_fraction: float = 0.1
    split_seed: int = 0  # fixed, so every method and seed sees the same split
    max_train_examples: int | None = None  # subsample the training set (tests)
    max_test_examples: int | None = None

    # Model.
    model: str = "cnn"
    hidden_sizes: tuple[int, ...] = (256, 256)
    conv_channels: tuple[int, ...] = (32, 64)
    dropout_rate: float = 0.0

    # Base optimizer.
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.9  # SGD only
    epochs: int = 40
    batch_size: int = 128
    seeds: tuple[int, ...] = (0, 1, 2)
    # Learning-rate multiplier of epochs 1, 2, ... (later epochs: 1); the
    # suite's learning-rate shock sets one entry to 10.
    lr_multipliers: tuple[float, ...] = ()

    # SAL: the method "sal" puts sal() last in the chain, "sal_first" first.
    sal_position: str = "last"
    # Chosen by benchmarks/sweep_defaults.py: rtol asks the epoch loss to
    # improve by 5%, so stress builds once training slows down.
    patience: int = 1
    yield_stress: int = 3
    noise_scale: float = 0.02
    plastic_scale: float = 0.05
    rtol: float = 0.05
    atol: float = 1e-4
    cooldown: int = 0
    spring_back: bool = True
    min_rms: float = 1e-3
    # "val": validation accuracy once per epoch (one SAL evaluation per epoch);
    # "train": batch accuracy of every step; "none": the loss alone.
    sal_accuracy: str = "val"

    # Outputs.
    output_dir: str = "runs"
    run_name: str | None = None
    progress: bool = True

    def __post_init__(self):
        _check_config(self)

    @property
    def methods(self) -> tuple[str, ...]:
        """Methods compared, from ``sal_position``: the baseline always first."""
        by_position = {
            "last": ("baseline", "sal"),
            "first": ("baseline", "sal_first"),
            "both": ("baseline", "sal", "sal_first"),
        }
        return by_position[self.sal_position]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of every field."""
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "Config":
        """Copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def _check_config(config: Config) -> None:
    """Raises ValueError naming the first field whose value is out of range."""
    positive = ("epochs", "batch_size", "patience", "yield_stress")
    for name in positive:
        value = getattr(config, name)
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")

    non_negative = ("noise_scale", "plastic_scale", "rtol", "atol", "cooldown")
    for name in non_negative + ("min_rms", "momentum"):
        value = getattr(config, name)
        if not value >= 0:
            raise ValueError(f"{name} must be >= 0, got {value}")

    if not config.learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {config.learning_rate}")
    if not 0 < config.val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {config.val_fraction}")
    if config.yield_stress < config.patience:
        raise ValueError(
            f"yield_stress must be >= patience, got {config.yield_stress=} "
            f"and {config.patience=}"
        )
    if not 0 <= config.dropout_rate < 1:
        raise ValueError(f"dropout_rate must be in [0, 1), got {config.dropout_rate}")
    for name in ("max_train_examples", "max_test_examples"):
        value = getattr(config, name)
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1 or None, got {value}")
    if not all(m > 0 for m in config.lr_multipliers):
        raise ValueError(f"lr_multipliers must be > 0, got {config.lr_multipliers}")
    if not config.seeds:
        raise ValueError("seeds must name at least one seed, got ()")
    _check_choice("sal_position", config.sal_position, SAL_POSITIONS)
    _check_choice("sal_accuracy", config.sal_accuracy, SAL_ACCURACY_SOURCES)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
