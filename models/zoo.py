"""The served models: one registered spec factory each. Adding a model is one entry here."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.imagenet import (
    ALEXNET_WEIGHTS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    VGG16_WEIGHTS,
    alexnet_aliases,
    build_alexnet,
    build_vgg16,
    imagenet_labels,
    vgg_aliases,
)
from models.lenet import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    build_lenet,
    build_lenet_classic,
)
from models.registry import ModelSpec, Preprocessing, WeightsRecord, register_model

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
LENET_METADATA = WEIGHTS_DIR / "lenet5_fashion_mnist.json"
LENET_CLASSIC_METADATA = WEIGHTS_DIR / "lenet5_classic_fashion_mnist.json"

IMAGENET_PREPROCESSING = Preprocessing(
    channels=3,
    input_size=224,
    resize_shorter=256,
    crop=224,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    convention="RGB photo; shorter side resized to 256 (bilinear), centre crop 224 (torchvision transforms)",
)


FASHION_MNIST_PREPROCESSING = Preprocessing(
    channels=1,
    input_size=28,
    resize_shorter=0,
    crop=0,
    mean=(FASHION_MNIST_MEAN,),
    std=(FASHION_MNIST_STD,),
    convention="grayscale, resized to 28x28; light object on a dark background (Fashion-MNIST)",
)


def _meta_aliases(
    build: Callable[[], nn.Sequential], aliases_of: Callable[[nn.Sequential], dict[str, str]]
) -> dict[str, str]:
    # The aliases depend on the topology only: a meta-device build costs no memory or init time.
    with torch.device("meta"):
        return aliases_of(build())


def _torchvision_imagenet(
    name: str, paper: str, build: Callable[[], nn.Sequential], url: str, weights_enum: str, **spec: Any
) -> ModelSpec:
    """A torchvision ImageNet-1k classifier with its IMAGENET1K_V1 weights (``spec``: the rest)."""
    return ModelSpec(
        name=name,
        task="image-classification",
        dataset="ImageNet-1k",
        description=f"{paper}, torchvision IMAGENET1K_V1 weights",
        input_shape=(3, 224, 224),
        num_classes=1000,
        labels=imagenet_labels(),
        preprocessing=IMAGENET_PREPROCESSING,
        build=build,
        weights=WeightsRecord.from_url(url, origin=f"torchvision {weights_enum}.IMAGENET1K_V1"),
        **spec,
    )


@register_model
def vgg16_spec() -> ModelSpec:
    return _torchvision_imagenet(
        "vgg16",
        "VGG16 (Simonyan & Zisserman 2014)",
        build_vgg16,
        VGG16_WEIGHTS.url,
        "VGG16_Weights",
        aliases=_meta_aliases(build_vgg16, vgg_aliases),
        # relu5_3, the last conv's rectified maps: the Grad-CAM authors' layer (Selvaraju et al. 2017)
        default_gradcam_layer="features.29",
        # relu3_1, relu4_1, relu5_1: Upchurch et al. 2017's feature layers.
        default_dfi_layers=("features.11", "features.18", "features.25"),
    )


@register_model
def alexnet_spec() -> ModelSpec:
    return _torchvision_imagenet(
        "alexnet",
        "AlexNet (Krizhevsky et al. 2012)",
        build_alexnet,
        ALEXNET_WEIGHTS.url,
        "AlexNet_Weights",
        aliases=_meta_aliases(build_alexnet, alexnet_aliases),
        default_gradcam_layer="features.11",  # relu5, the authors' layer for AlexNet
        # relu2 (27x27, 1/8 of the input), relu3 and relu5 (13x13, 1/16): one layer per scale as
        # VGG's relu3_1..relu5_1 do, skipping relu1 (55x55), which is close to pixels.
        default_dfi_layers=("features.4", "features.7", "features.11"),
    )


def _fashion_mnist_lenet(
    name: str, description: str, build: Callable[..., nn.Module], metadata: Path, how_to_make: str, **spec: Any
) -> ModelSpec:
    """A LeNet trained in this repo on Fashion-MNIST (``spec``: the rest)."""
    return ModelSpec(
        name=name,
        task="image-classification",
        dataset="Fashion-MNIST",
        description=description,
        input_shape=(1, 28, 28),
        num_classes=len(FASHION_MNIST_CLASSES),
        labels=FASHION_MNIST_CLASSES,
        preprocessing=FASHION_MNIST_PREPROCESSING,
        build=build,
        weights=WeightsRecord(
            bundled_metadata=metadata, origin="trained in this repo on Fashion-MNIST", how_to_make=how_to_make
        ),
        aliases={},  # module paths are already the names users address (conv1, relu1 or sig1, ..., fc3)
        training_dataset="fashion-mnist",
        **spec,
    )


@register_model
def lenet_spec() -> ModelSpec:
    return _fashion_mnist_lenet(
        "lenet",
        "LeNet-5 with batch norm (LeCun et al. 1998), trained in this repo on Fashion-MNIST",
        build_lenet,
        LENET_METADATA,
        "train them with `interp-train` (writes models/weights/, about 6 minutes on 2 cores)",
        # The last conv's rectified maps (conv2 itself, before batch norm and ReLU, gives an all-zero
        # map for 10 % of the test images: benchmarks.eval_lenet_methods).
        default_gradcam_layer="relu2",
        default_dfi_layers=("relu1", "relu2"),
    )


@register_model
def lenet_classic_spec() -> ModelSpec:
    return _fashion_mnist_lenet(
        "lenet-classic",
        "the lecture's LeNet (sigmoid, average pooling; Dive into Deep Learning), trained in this repo on "
        "Fashion-MNIST",
        build_lenet_classic,
        LENET_CLASSIC_METADATA,
        "train them with `interp-train --arch classic` (writes models/weights/, a few minutes on one free core)",
        # No rectifier: the last conv (its sigmoid's maps give more all-zero maps, 27 % against 7 %).
        default_gradcam_layer="conv2",
        # The post-activation maps of both conv stages, as for lenet (relu1, relu2).
        default_dfi_layers=("sig1", "sig2"),
    )
