"""The model layer: registry, weights resolution, layer catalogue, loaded-model hub.

Importing the package registers the served models (``models.zoo``). Never imports ``interp``.
"""

from models import zoo as _zoo  # noqa: F401  (registers vgg16, alexnet, lenet)
