"""The C&W margin objective (``loss="cw"``) added for A3's C&W-inf evaluation."""

from __future__ import annotations

import pytest
import torch
from attacks_helpers import gen, images, linear_classifier

from robustlab.attacks import cw_loss, pgd


def test_cw_loss_values() -> None:
    logits = torch.tensor([[4.0, 1.0, 0.0, -1.0], [0.0, 3.0, 1.0, 2.0]])
    labels = torch.tensor([0, 0])
    # untargeted: best other logit minus the true one; positive exactly when misclassified
    assert torch.equal(cw_loss(logits, labels), torch.tensor([-3.0, 3.0]))
    # targeted: target logit minus the best logit other than the target
    assert torch.equal(cw_loss(logits, labels, torch.tensor([2, 1])), torch.tensor([-4.0, 1.0]))
    with pytest.raises(ValueError, match="K >= 2"):
        cw_loss(torch.zeros(2, 1), torch.tensor([0, 0]))


def test_pgd_with_cw_loss_stays_in_the_ball_and_lowers_the_margin() -> None:
    model = linear_classifier()
    x = images(8, size=8)
    with torch.no_grad():
        y = model(x).argmax(dim=1)
    adv = pgd(model, x, y, eps=8 / 255, steps=10, loss="cw", generator=gen(0))
    assert float((adv - x).abs().max()) <= 8 / 255 + 1e-6
    assert float(adv.min()) >= 0 and float(adv.max()) <= 1
    with torch.no_grad():
        assert float(cw_loss(model(adv), y).mean()) > float(cw_loss(model(x), y).mean())
