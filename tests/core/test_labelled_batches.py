import pytest
import torch

from pyrovae.data import DataError, Dataset
from pyrovae.primitives import batch_args


def data() -> Dataset:
    x = torch.arange(10.0)[:, None].expand(10, 3).clone()
    return Dataset("toy", {"train": x, "test": x}, {"train": torch.arange(10), "test": torch.arange(10)})


def test_labelled_batches_keep_each_label_with_its_row():
    for batches in (
        data().train_batches(4, torch.Generator().manual_seed(0), labels=True),
        data().eval_batches("test", 4, labels=True),
    ):
        pairs = list(batches)
        assert all(isinstance(b, tuple) and torch.equal(b[0][:, 0].long(), b[1]) for b in pairs)
        assert sorted(torch.cat([y for _, y in pairs]).tolist()) == list(range(10))
    (x, y), *_ = data().eval_batches("test", 100, limit=6, labels=True)
    assert torch.equal(x[:, 0].long(), y) and y.shape == (6,)


def test_unlabelled_batches_are_tensors_and_missing_labels_a_clear_error():
    x = next(data().eval_batches("test", 4))
    assert torch.is_tensor(x) and batch_args(x) == (x,)
    pair = next(data().eval_batches("test", 4, labels=True))
    assert batch_args(pair) is pair
    unlabelled = Dataset("plain", {"train": torch.zeros(4, 2)})
    with pytest.raises(DataError, match=r"has no labels.*cvae.*mnist-5k"):
        next(unlabelled.train_batches(2, torch.Generator(), labels=True))
