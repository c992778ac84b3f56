"""The public top level: ``robustlab.create_model`` ... ``robustlab.Store``, imported lazily, and the README example."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import robustlab

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_public_name_is_the_library_object() -> None:
    from robustlab import attacks, data, engine, models, store

    assert robustlab.create_model is models.create_model
    assert robustlab.load_dataset is data.load_dataset
    assert robustlab.evaluate is engine.evaluate
    assert robustlab.Store is store.Store
    assert robustlab.attack is attacks.attack
    assert robustlab.wrap_model is models.wrap_model
    assert sorted(robustlab.__all__) == sorted(
        ["Store", "__version__", "attack", "create_model", "evaluate", "explain", "load_dataset", "perturb",
         "wrap_model"]
    )  # fmt: skip
    assert set(robustlab.__all__) <= set(dir(robustlab))
    with pytest.raises(AttributeError, match="no attribute 'create_modle'"):
        robustlab.create_modle  # noqa: B018


def test_perturb_and_explain_are_callable_subpackages() -> None:
    from robustlab import explain, perturb

    assert robustlab.perturb is perturb and robustlab.explain is explain  # still the modules
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    called = robustlab.perturb(images, "gaussian_noise", 3, generator=torch.Generator().manual_seed(1))
    direct = perturb.perturb(images, "gaussian_noise", 3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(called, direct) and not torch.equal(called, images)
    model = robustlab.create_model("cifar:small_cnn", pretrained=False, seed=0)
    maps = robustlab.explain(model, images, "grad_cam")
    assert maps.shape == (2, 1, 32, 32)
    assert torch.equal(maps, explain.explain(model, images, "grad_cam"))


def test_wrap_model_at_the_top_level_feeds_the_network_normalised_pixels() -> None:
    from robustlab.models import Classifier

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4))
    model = robustlab.wrap_model(net, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3), input_size=8)
    assert isinstance(model, Classifier) and model.num_classes == 4
    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    mean = torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)
    std = torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(model(images), net((images - mean) / std), atol=1e-6)


def test_attack_dispatches_through_the_registry() -> None:
    model = robustlab.create_model("cifar:small_cnn", pretrained=False, seed=0)
    images = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, 3])
    adversarial = robustlab.attack(model, images, labels, "fgsm", eps=2 / 255)
    assert torch.equal(adversarial, robustlab.attacks.fgsm(model, images, labels, eps=2 / 255))
    assert (adversarial - images).abs().max() <= 2 / 255 + 1e-6
    with pytest.raises(ValueError, match="Did you mean 'pgd'"):
        robustlab.attack(model, images, labels, "pgdd")


def test_import_robustlab_loads_no_subpackage() -> None:
    # the front doors are imported on first use, so `import robustlab` stays as cheap as torch itself
    code = "import sys, robustlab; print(sorted(m for m in sys.modules if m.startswith('robustlab.')))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "['robustlab._compat']"


@pytest.mark.realdata
def test_readme_python_example_runs_as_written(data_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)
    assert len(blocks) == 1, "README.md should hold one ```python example"
    monkeypatch.setenv("ROBUSTLAB_DATA", str(data_root))
    namespace: dict[str, object] = {"__name__": "readme_example"}
    exec(compile(blocks[0], str(README), "exec"), namespace)  # noqa: S102
    # the README promises 854 of 932 for cifar:resnet20 on cifar10_exact, when it says so
    if "correct" in namespace and "count" in namespace:
        assert (namespace["correct"], namespace["count"]) == (854, 932)
