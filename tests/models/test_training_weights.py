"""Sample weights and validation kinds of the trainer (issue 26: learn from what screening
sees)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gnomon.models.training import Trainer
from tests.models.conftest import TINY_SPEC, tiny_config, toy_samples


def test_equal_weights_keep_the_plain_mean():
    samples = toy_samples(6)
    assert Trainer._loss_weights(samples) is None
    samples[0].weight = 2.0
    assert Trainer._loss_weights(samples).tolist()[:2] == [2.0, 1.0]


def test_negative_weights_are_refused():
    samples = toy_samples(3)
    samples[1].weight = -1.0
    with pytest.raises(ValueError, match="non-negative"):
        Trainer._loss_weights(samples)


def test_the_loss_is_the_weighted_mean_of_the_samples_huber_losses():
    trainer = Trainer(TINY_SPEC, tiny_config())
    pred, y = torch.tensor([0.0, 1.0, 3.0]), torch.tensor([0.5, 1.0, 0.0])
    weights = torch.tensor([1.0, 0.0, 0.0, 3.0])
    sel = np.array([0, 1, 3])
    loss = trainer._loss(pred, y, weights, sel, torch.device("cpu"))
    per = F.huber_loss(pred, y, delta=0.1, reduction="none")
    assert float(loss) == pytest.approx(float((per[0] + 3 * per[2]) / 4))
    # a zero-weight sample does not count at all
    only = trainer._loss(pred[[0, 2]], y[[0, 2]], torch.tensor([1.0, 3.0]), np.array([0, 1]),
                         torch.device("cpu"))
    assert float(only) == pytest.approx(float(loss))


def _with_inputs(n: int) -> list:
    """Each toy sample twice: as ``relaxed`` and as a 10 %-expanded ``unrelaxed`` input."""
    out = []
    for s in toy_samples(n):
        start = replace(s, key=f"{s.key}:unrelaxed", kind="unrelaxed", weight=2.0)
        out += [s, start]
    return out


def test_validation_is_judged_on_the_kinds_asked_for():
    trainer = Trainer(TINY_SPEC, tiny_config(group_by="chemsys", val_kinds=("unrelaxed",)))
    data = trainer.prepare(_with_inputs(40))
    assert data.split.val
    assert {data.samples[i].kind for i in data.split.val} == {"unrelaxed"}
    kinds = {data.samples[i].kind for i in data.split.train}
    assert kinds == {"relaxed", "unrelaxed"}
    assert data.weights is not None and set(data.weights.tolist()) == {1.0, 2.0}


def test_without_val_kinds_every_kind_validates():
    trainer = Trainer(TINY_SPEC, tiny_config(group_by="chemsys"))
    data = trainer.prepare(_with_inputs(40))
    assert {data.samples[i].kind for i in data.split.val} == {"relaxed", "unrelaxed"}


def test_a_weighted_mix_trains_end_to_end():
    result = Trainer(TINY_SPEC, tiny_config(group_by="chemsys", val_kinds=("unrelaxed",),
                                            ensemble_size=1, max_epochs=2)).fit(_with_inputs(30))
    assert all(k.endswith(":unrelaxed") for k in result.split["val"])
    assert result.metrics["val"]["n"] == len(result.split["val"])
