"""Tests of benchmarks/data.py: every source, the validation split, the errors."""

import pathlib
import re
import sys
from collections.abc import Iterator

import numpy as np
import pytest

from benchmarks import data

SHARED_DATA = pathlib.Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def _check_splits(ds: data.Dataset, input_shape: tuple[int, ...]) -> None:
    assert ds.input_shape == input_shape
    for x, y in (
        (ds.x_train, ds.y_train),
        (ds.x_val, ds.y_val),
        (ds.x_test, ds.y_test),
    ):
        assert x.dtype == np.float32 and y.dtype == np.int32
        assert x.shape == (len(y), *input_shape)
        assert 0 <= y.min() and y.max() < ds.num_classes


@pytest.fixture(scope="module")
def mnist1d() -> Iterator[data.Dataset]:
    # Generated once: the later get_dataset calls of this module reuse the arrays.
    arrays = data.load_mnist1d()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(data, "load_mnist1d", lambda: arrays)
        yield data.get_dataset("mnist1d", val_fraction=0.1, split_seed=0)


def test_mnist1d_is_generated_with_a_seeded_validation_split(mnist1d):
    _check_splits(mnist1d, (40,))
    assert (len(mnist1d.y_train), len(mnist1d.y_val), len(mnist1d.y_test)) == (
        3600,
        400,
        1000,
    )
    assert mnist1d.num_classes == 10

    # The validation examples are training examples, carved by the seed alone.
    train_rows = {row.tobytes() for row in mnist1d.x_train}
    assert not any(row.tobytes() in train_rows for row in mnist1d.x_val)
    again = data.get_dataset("mnist1d", split_seed=0)
    np.testing.assert_array_equal(again.x_val, mnist1d.x_val)
    other = data.get_dataset("mnist1d", split_seed=1)
    assert not np.array_equal(other.y_val, mnist1d.y_val)
    np.testing.assert_array_equal(other.x_test, mnist1d.x_test)


def test_digits_are_8x8_images_in_unit_range():
    ds = data.get_dataset("digits")
    _check_splits(ds, (8, 8, 1))
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    assert len(ds.y_train) + len(ds.y_val) + len(ds.y_test) == 1797


@pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason="../shared/data/ (offline npz copies) is absent"
)
@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_shared_npz_files_are_found_by_name(name):
    ds = data.get_dataset(
        name, str(SHARED_DATA), max_train_examples=500, max_test_examples=100
    )
    _check_splits(ds, (28, 28, 1))
    assert ds.source.startswith(f"npz:{name}")
    assert (len(ds.y_train) + len(ds.y_val), len(ds.y_test)) == (500, 100)
    assert ds.x_train.max() <= 1.0  # uint8 pixels are scaled to [0, 1]


def _write_npz(path: pathlib.Path, num_train: int = 20, **drop) -> None:
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (num_train, 4, 4, 3), dtype=np.uint8),
        "y_train": np.arange(num_train) % 3,
        "x_test": rng.integers(0, 256, (6, 4, 4, 3), dtype=np.uint8),
        "y_test": np.arange(6) % 3,
    }
    np.savez(path, **{k: v for k, v in arrays.items() if k not in drop})


def test_npz_rule_prefers_the_exact_name_then_one_suffixed_file(tmp_path):
    _write_npz(tmp_path / "toy_small.npz", num_train=10)
    assert data.find_npz("toy", str(tmp_path)).name == "toy_small.npz"
    # "toy" must not pick "toyota.npz": only NAME.npz or NAME_*.npz match.
    _write_npz(tmp_path / "toyota.npz")
    assert data.find_npz("toy", str(tmp_path)).name == "toy_small.npz"

    _write_npz(tmp_path / "toy.npz")
    ds = data.get_dataset("toy", str(tmp_path))
    _check_splits(ds, (4, 4, 3))
    assert ds.num_classes == 3 and ds.source == "npz:toy.npz"


def test_npz_errors_name_the_problem(tmp_path):
    _write_npz(tmp_path / "toy_a.npz")
    _write_npz(tmp_path / "toy_b.npz")
    with pytest.raises(data.DataError, match="exactly one toy_.*toy_a.npz, toy_b"):
        data.get_dataset("toy", str(tmp_path))
    with pytest.raises(data.DataError, match="found none"):
        data.get_dataset("nothing", str(tmp_path))

    _write_npz(tmp_path / "bad.npz", y_test=True)
    with pytest.raises(data.DataError, match="lacks the arrays y_test"):
        data.get_dataset("bad", str(tmp_path))


BAD_LABELS = {
    # name: (y_train, y_test, message); the message echoes the bad value.
    "all-minus-one": ([-1] * 20, [-1] * 6, "y_train labels must be >= 0, got -1"),
    "negative-test": ([0, 1] * 10, [0, -2] * 3, "y_test labels must be >= 0, got -2"),
    "one-class": ([2] * 20, [2] * 6, "at least 2 classes, got only the label 2"),
    "float": ([0.0, 1.0] * 10, [0] * 6, "integer class labels, got dtype float64"),
    "test-beyond-train": ([0, 1] * 10, [0, 1, 2] * 2, "y_test labels must be < 2"),
}


@pytest.mark.parametrize(
    ("y_train", "y_test", "message"), BAD_LABELS.values(), ids=BAD_LABELS
)
def test_npz_labels_must_be_class_indices(tmp_path, y_train, y_test, message):
    x = np.zeros((20, 4), np.float32)
    np.savez(
        tmp_path / "toy.npz",
        x_train=x, y_train=np.asarray(y_train), x_test=x[:6], y_test=np.asarray(y_test),
    )  # fmt: skip
    with pytest.raises(data.DataError, match=f"toy.npz: .*{re.escape(message)}"):
        data.get_dataset("toy", str(tmp_path))


def test_npz_classes_are_counted_from_the_training_labels(tmp_path):
    x = np.zeros((20, 4), np.float32)
    labels = np.arange(20, dtype=np.uint8) % 4  # unsigned labels are integers too
    np.savez(tmp_path / "toy.npz", x_train=x, y_train=labels, x_test=x, y_test=labels)
    assert data.get_dataset("toy", str(tmp_path)).num_classes == 4


@pytest.mark.parametrize(
    ("name", "data_dir", "message"),
    [
        ("imagenet21k", None, "unknown dataset 'imagenet21k'"),
        ("tiny_imagenet", None, "tensorflow-datasets has no 'tiny_imagenet'"),
        ("mnist", "no/such/folder", "does not exist"),
        ("mnist", __file__, f"--data-dir must be a folder, got the file {__file__!r}"),
        ("digits", ".", "not used by the built-in dataset"),
    ],
    ids=[
        "unknown",
        "tiny-imagenet-needs-npz",
        "missing-dir",
        "dir-is-a-file",
        "builtin-with-dir",
    ],  # fmt: skip
)
def test_bad_sources_raise_before_loading(name, data_dir, message):
    with pytest.raises(data.DataError, match=message):
        data.check_source(name, data_dir)


@pytest.mark.parametrize(
    ("name", "shape", "num_classes"),
    [("mnist", (28, 28, 1), 10), ("cifar100", (32, 32, 3), 100)],
)
def test_tfds_loads_offline_with_mock_data_and_without_tensorflow(
    name, shape, num_classes
):
    tfds = pytest.importorskip("tensorflow_datasets")
    assert "tensorflow" not in sys.modules  # the data_source path needs no TF

    with tfds.testing.mock_data(
        num_examples=20, policy=tfds.testing.MockPolicy.USE_CODE
    ):
        ds = data.get_dataset(name, val_fraction=0.25)

    _check_splits(ds, shape)
    assert ds.num_classes == num_classes  # from the tfds metadata, not the labels
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (15, 5, 20)


def test_tfds_missing_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(data.DataError, match=r"pip install 'sal-optax\[tfds\]'"):
        data.get_dataset("cifar10")


def test_tfds_missing_tensorflow_says_what_to_install(monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")

    def needs_tensorflow(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'tensorflow'")

    monkeypatch.setattr(tfds, "data_source", needs_tensorflow)
    with pytest.raises(data.DataError, match="needs TensorFlow.*sal-optax"):
        data.get_dataset("svhn_cropped")
