"""torchvision's ImageNet classifiers (VGG16, AlexNet) rebuilt for serving.

The served module is ``nn.Sequential(normalize, features, avgpool, flatten, classifier)``:
normalization with the ImageNet mean/std comes first, so the model takes pixels in [0, 1], and the
other children keep torchvision's names, so torchvision's canonical state_dicts load unchanged
(strictly: Normalize's buffers are not persistent). Every ReLU is out-of-place so forward hooks
and guided backprop see each layer's own output.

Aliases follow the Caffe names the papers use: VGG ``conv3_1``/``relu3_1``/``pool3``, AlexNet
``conv1``..``conv5``/``relu1``..``relu5``/``pool1``, ``pool2``, ``pool5``, and for both the
classifier ``fc6``, ``relu6``, ``fc7``, ``relu7``, ``fc8``.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn
from torchvision.models import VGG, AlexNet, AlexNet_Weights, VGG16_Weights, alexnet, vgg16

from models.lenet import Normalize

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

VGG16_WEIGHTS = VGG16_Weights.IMAGENET1K_V1
ALEXNET_WEIGHTS = AlexNet_Weights.IMAGENET1K_V1


def imagenet_labels() -> tuple[str, ...]:
    """The 1000 ImageNet class names from torchvision's weights metadata (no download)."""
    return tuple(VGG16_WEIGHTS.meta["categories"])


def _served(model: VGG | AlexNet) -> nn.Sequential:
    """Wrap a torchvision VGG/AlexNet as the served Sequential (normalize first, ReLUs out-of-place)."""
    for module in model.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
    return nn.Sequential(
        OrderedDict(
            [
                ("normalize", Normalize(IMAGENET_MEAN, IMAGENET_STD)),
                ("features", model.features),
                ("avgpool", model.avgpool),
                ("flatten", nn.Flatten(1)),
                ("classifier", model.classifier),
            ]
        )
    )


def build_vgg16() -> nn.Sequential:
    """VGG16 (Simonyan & Zisserman 2014), torchvision layout, randomly initialised.

    (B, 3, H, W) pixels in [0, 1] -> (B, 1000) logits.
    """
    return _served(vgg16(weights=None))


def build_alexnet() -> nn.Sequential:
    """AlexNet (Krizhevsky et al. 2012; torchvision's one-weird-trick variant), randomly initialised.

    (B, 3, H, W) pixels in [0, 1] -> (B, 1000) logits.
    """
    return _served(alexnet(weights=None))


def vgg_aliases(model: nn.Sequential) -> dict[str, str]:
    """Caffe names for a served VGG: conv{block}_{i}, relu{block}_{i}, pool{block}, fc6..fc8, relu6/7."""
    aliases: dict[str, str] = {}
    block, index = 1, 1
    for name, module in _sequential(model, "features").named_children():
        path = f"features.{name}"
        if isinstance(module, nn.Conv2d):
            aliases[f"conv{block}_{index}"] = path
        elif isinstance(module, nn.ReLU):
            aliases[f"relu{block}_{index}"] = path
            index += 1
        elif isinstance(module, nn.MaxPool2d):
            aliases[f"pool{block}"] = path
            block, index = block + 1, 1
    aliases.update(_classifier_aliases(_sequential(model, "classifier")))
    return aliases


def alexnet_aliases(model: nn.Sequential) -> dict[str, str]:
    """Caffe names for a served AlexNet: conv1..5, relu1..5, pool1/2/5 (numbered by the conv before)."""
    return _numbered(_sequential(model, "features"), "features", nn.Conv2d, "conv", 0) | _classifier_aliases(
        _sequential(model, "classifier")
    )


def _sequential(model: nn.Module, name: str) -> nn.Sequential:
    """The served model's ``name`` child, which the alias tables walk in order."""
    child = model.get_submodule(name)
    if not isinstance(child, nn.Sequential):
        raise TypeError(f"{name} of a served model must be an nn.Sequential, got {type(child).__name__}")
    return child


def _classifier_aliases(classifier: nn.Sequential) -> dict[str, str]:
    """fc6, fc7, fc8 for the classifier's linears and relu6, relu7 for the ReLUs after them."""
    return _numbered(classifier, "classifier", nn.Linear, "fc", 5)


def _numbered(seq: nn.Sequential, prefix: str, counted: type[nn.Module], stem: str, start: int) -> dict[str, str]:
    """``<stem>N`` for the N-th ``counted`` child (N from ``start + 1``), ``reluN`` and ``poolN`` for
    the ReLUs and max-pools after it (paths ``<prefix>.<child>``)."""
    aliases: dict[str, str] = {}
    n = start
    for name, module in seq.named_children():
        path = f"{prefix}.{name}"
        if isinstance(module, counted):
            n += 1
            aliases[f"{stem}{n}"] = path
        elif isinstance(module, nn.ReLU):
            aliases[f"relu{n}"] = path
        elif isinstance(module, nn.MaxPool2d):
            aliases[f"pool{n}"] = path
    return aliases
