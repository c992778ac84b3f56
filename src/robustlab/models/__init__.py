"""Models: ``create_model(spec)`` -> :class:`Classifier` taking [0, 1] pixels, and probes into their insides.

Importing this package registers every built-in model in :data:`MODELS` (timm and open_clip are imported only
when such a model is created).
"""

from __future__ import annotations

# imported for their @MODELS.register side effect
from robustlab.models import cifar_resnet, crown_resnet, efficientnet, small_cnn, vit_small  # noqa: F401
from robustlab.models._common import CIFAR10_CLASSES, imagenet_class_names
from robustlab.models._zoo import MODELS, create_model, is_user_model, list_models
from robustlab.models.checkpoint import load_checkpoint, save_checkpoint
from robustlab.models.classifier import Classifier
from robustlab.models.custom import create_custom_model, wrap_model
from robustlab.models.probes import ViTProbe, cam_features, classifier_weights, vit_probe

__all__ = [
    "CIFAR10_CLASSES",
    "MODELS",
    "Classifier",
    "ViTProbe",
    "cam_features",
    "classifier_weights",
    "create_custom_model",
    "create_model",
    "imagenet_class_names",
    "is_user_model",
    "list_models",
    "load_checkpoint",
    "save_checkpoint",
    "vit_probe",
    "wrap_model",
]
