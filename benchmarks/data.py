"""Datasets of the benchmark as numpy arrays: train, validation and test splits.

Sources, chosen by ``get_dataset(name, data_dir)``:

- ``mnist1d`` (default): MNIST-1D generated locally with ``mnist1d``'s
  ``make_dataset`` (4,000 train and 1,000 test sequences of length 40).
- ``digits``: scikit-learn's bundled 8x8 digits (1,797 images, 20% for test).
- any name with ``data_dir``: ``data_dir/NAME.npz``, or else the only file
  ``data_dir/NAME_*.npz``, holding ``x_train, y_train, x_test, y_test``
  (``--dataset mnist --data-dir ../shared/data`` reads ``mnist_10k.npz``).
- ``mnist, fashion_mnist, cifar10, cifar100, svhn_cropped, stl10`` without
  ``data_dir``: tensorflow-datasets through ``tfds.data_source`` (array_record,
  random access without TensorFlow once prepared; the first download and
  preparation needs internet and ``pip install 'sal-optax[tfds]'``).
- ``tiny_imagenet``: tfds has no Tiny-ImageNet, so it is read from an npz
  file only; build ``tiny_imagenet.npz`` from the official zip with its
  labelled ``val`` split as ``x_test, y_test`` (the test labels are not public).

The validation split is carved from the training set with a seeded
permutation; the test split is only ever evaluated.
"""

import dataclasses
import pathlib
import zipfile
import zlib
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from benchmarks.config import Config

BUILTIN_DATASETS = ("mnist1d", "digits")
TFDS_DATASETS = (
    "mnist", "fashion_mnist", "cifar10", "cifar100", "svhn_cropped", "stl10"
)  # fmt: skip
NPZ_ONLY_DATASETS = ("tiny_imagenet",)
DATASETS = BUILTIN_DATASETS + TFDS_DATASETS + NPZ_ONLY_DATASETS
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
DIGITS_TEST_FRACTION = 0.2
TFDS_INSTALL_HINT = "pip install 'sal-optax[tfds]' (it installs TensorFlow)"


class DataError(ValueError):
    """A dataset that cannot be found or read; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Float32 inputs with a trailing channel axis for images, int32 labels."""

    name: str
    source: str
    num_classes: int
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example, without the batch axis."""
        return tuple(self.x_train.shape[1:])

    def metadata(self) -> dict:
        """JSON-ready description: name, source, shapes and split sizes."""
        return {
            "name": self.name,
            "source": self.source,
            "num_classes": self.num_classes,
            "input_shape": list(self.input_shape),
            "num_train": len(self.y_train),
            "num_val": len(self.y_val),
            "num_test": len(self.y_test),
        }


def check_source(name: str, data_dir: str | None) -> None:
    """Raises DataError early when ``name`` and ``data_dir`` cannot work."""
    if data_dir is not None:
        if name in BUILTIN_DATASETS:
            raise DataError(f"--data-dir is not used by the built-in dataset {name!r}")
        folder = pathlib.Path(data_dir)
        if folder.exists() and not folder.is_dir():
            raise DataError(f"--data-dir must be a folder, got the file {data_dir!r}")
        if not folder.is_dir():
            raise DataError(f"--data-dir {data_dir!r} does not exist")
        return
    if name in NPZ_ONLY_DATASETS:
        raise DataError(
            f"tensorflow-datasets has no {name!r}: pass --data-dir with {name}.npz "
            "(x_train, y_train, x_test, y_test; see benchmarks/data.py)"
        )
    if name not in DATASETS:
        raise DataError(
            f"unknown dataset {name!r}: expected one of {', '.join(DATASETS)}, "
            "or any name with --data-dir holding NAME.npz"
        )


def get_dataset(
    name: str = "mnist1d",
    data_dir: str | None = None,
    *,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    max_train_examples: int | None = None,
    max_test_examples: int | None = None,
) -> Dataset:
    """Loads a dataset and carves a seeded validation split from its training set.

    Args:
      name: a name of ``DATASETS``, or any name when ``data_dir`` is given.
      data_dir: folder of ``NAME.npz`` or ``NAME_*.npz`` files.
      val_fraction: share of the training set held out for validation.
      split_seed: seed of the permutation that picks the validation examples.
      max_train_examples: keep only this many training examples (before the
        validation split); ``None`` keeps all.
      max_test_examples: keep only this many test examples.

    Returns:
      A ``Dataset``.
    """
    check_source(name, data_dir)
    if data_dir is not None:
        path = find_npz(name, data_dir)
        x_train, y_train, x_test, y_test = load_npz(path)
        num_classes = check_labels(path, y_train, y_test)
        source = f"npz:{path.name}"
    elif name == "mnist1d":
        x_train, y_train, x_test, y_test = load_mnist1d()
        num_classes = 10
        source = "mnist1d.make_dataset"
    elif name == "digits":
        x_train, y_train, x_test, y_test = load_digits()
        num_classes = 10
        source = "sklearn.datasets.load_digits"
    else:
        x_train, y_train, x_test, y_test, num_classes = load_tfds(name)
        source = "tensorflow_datasets"

    x_train, y_train = x_train[:max_train_examples], y_train[:max_train_examples]
    x_test, y_test = x_test[:max_test_examples], y_test[:max_test_examples]
    x_train, y_train, x_val, y_val = _split_validation(
        x_train, y_train, val_fraction, split_seed
    )
    return Dataset(
        name,
        source,
        num_classes,
        *(_as_inputs(x_train), _as_labels(y_train)),
        *(_as_inputs(x_val), _as_labels(y_val)),
        *(_as_inputs(x_test), _as_labels(y_test)),
    )


def get_dataset_for(config: "Config") -> Dataset:
    """The dataset a run's config names, with its validation split and subsampling."""
    return get_dataset(
        config.dataset,
        config.data_dir,
        val_fraction=config.val_fraction,
        split_seed=config.split_seed,
        max_train_examples=config.max_train_examples,
        max_test_examples=config.max_test_examples,
    )


def find_npz(name: str, data_dir: str) -> pathlib.Path:
    """Returns ``data_dir/NAME.npz``, or else the only ``data_dir/NAME_*.npz``."""
    folder = pathlib.Path(data_dir)
    exact = folder / f"{name}.npz"
    if exact.is_file():
        return exact

    matches = sorted(folder.glob(f"{name}_*.npz"))
    if len(matches) != 1:
        found = ", ".join(p.name for p in matches) or "none"
        raise DataError(
            f"expected {name}.npz or exactly one {name}_*.npz in {data_dir!r}, "
            f"found {found}"
        )
    return matches[0]


def load_npz(path: pathlib.Path) -> tuple[np.ndarray, ...]:
    """Reads ``x_train, y_train, x_test, y_test`` from an npz file."""
    try:
        # Our own handle: np.load leaks its file when the zip is broken.
        with open(path, "rb") as file, np.load(file) as arrays:
            missing = [key for key in NPZ_KEYS if key not in arrays]
            if missing:
                raise DataError(f"{path.name} lacks the arrays {', '.join(missing)}")
            return tuple(arrays[key] for key in NPZ_KEYS)
    except DataError:
        raise
    # A truncated or foreign file fails inside numpy or zipfile; name the file.
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError) as err:
        reason = f"{type(err).__name__}: {err}".splitlines()[0]
        raise DataError(f"cannot read {str(path)!r} as an npz file ({reason})") from err


def check_labels(path: pathlib.Path, y_train: np.ndarray, y_test: np.ndarray) -> int:
    """Returns the number of classes of an npz file, ``max(y_train) + 1``.

    Raises DataError unless the labels are class indices: non-negative
    integers, at least two classes in ``y_train``, and in ``y_test`` only
    classes of the training range. Otherwise labels of -1 train without an
    error and score 100% test accuracy, and a test class beyond
    ``num_classes`` has no logit to be predicted by.
    """
    for key, labels in (("y_train", y_train), ("y_test", y_test)):
        if labels.dtype.kind not in "iu":
            raise DataError(
                f"{path.name}: {key} must hold integer class labels, "
                f"got dtype {labels.dtype}"
            )
        if labels.size == 0:
            raise DataError(f"{path.name}: {key} is empty")
        if labels.min() < 0:
            raise DataError(
                f"{path.name}: {key} labels must be >= 0, got {labels.min()}"
            )

    classes = np.unique(y_train)
    if len(classes) < 2:
        raise DataError(
            f"{path.name}: y_train must hold at least 2 classes, "
            f"got only the label {classes[0]}"
        )
    num_classes = int(classes[-1]) + 1
    if y_test.max() >= num_classes:
        raise DataError(
            f"{path.name}: y_test labels must be < {num_classes} (the largest "
            f"y_train label + 1), got {y_test.max()}"
        )
    return num_classes


def load_mnist1d() -> tuple[np.ndarray, ...]:
    """Generates MNIST-1D locally with the package defaults (seed 42)."""
    from mnist1d.data import get_dataset_args, make_dataset

    # make_dataset builds the data from templates; get_dataset would download.
    arrays = make_dataset(get_dataset_args())
    return arrays["x"], arrays["y"], arrays["x_test"], arrays["y_test"]


def load_digits() -> tuple[np.ndarray, ...]:
    """scikit-learn's 8x8 digits, split into train and test with a fixed seed."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = (bunch.images / 16.0).astype(np.float32)
    order = np.random.default_rng(0).permutation(len(images))
    num_test = int(round(DIGITS_TEST_FRACTION * len(images)))
    test, train = order[:num_test], order[num_test:]
    return images[train], bunch.target[train], images[test], bunch.target[test]


def load_tfds(name: str, data_dir: str | None = None) -> tuple[np.ndarray, ...]:
    """Reads the train and test splits, and the number of classes, from tfds."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as err:
        raise DataError(
            f"dataset {name!r} needs tensorflow-datasets: {TFDS_INSTALL_HINT}"
        ) from err

    arrays = []
    for split in ("train", "test"):
        try:
            source = tfds.data_source(name, split=split, data_dir=data_dir)
        except ImportError as err:
            raise DataError(
                f"preparing {name!r} needs TensorFlow ({err}): {TFDS_INSTALL_HINT}"
            ) from err
        except (OSError, NotImplementedError, tfds.core.DatasetNotFoundError) as err:
            raise DataError(
                f"cannot load {name!r} from tensorflow-datasets ({type(err).__name__})"
                f": download it once with internet and {TFDS_INSTALL_HINT}, "
                f"or pass --data-dir with {name}.npz"
            ) from err
        arrays.extend(_read_examples(source))
    num_classes = source.dataset_info.features["label"].num_classes
    return (*arrays, num_classes)


def _read_examples(source) -> tuple[np.ndarray, np.ndarray]:
    # One record at a time: decoding dominates, and tfds' mock data source
    # does not implement the batched __getitems__.
    examples = list(source)
    images = np.stack([np.asarray(e["image"]) for e in examples])
    labels = np.asarray([e["label"] for e in examples])
    return images, labels


def _split_validation(x, y, val_fraction: float, seed: int):
    order = np.random.default_rng(seed).permutation(len(y))
    num_val = max(1, int(round(val_fraction * len(y))))
    if num_val >= len(y):
        raise DataError(
            f"{len(y)} training examples cannot spare {num_val} for validation"
        )
    val, train = order[:num_val], order[num_val:]
    return x[train], y[train], x[val], y[val]


def _as_inputs(x: np.ndarray) -> np.ndarray:
    scale = 255.0 if x.dtype == np.uint8 else 1.0
    x = x.astype(np.float32) / scale
    # Grayscale images (N, H, W) get the channel axis that convolutions expect.
    return x[..., None] if x.ndim == 3 else x


def _as_labels(y: np.ndarray) -> np.ndarray:
    return np.asarray(y).reshape(-1).astype(np.int32)
