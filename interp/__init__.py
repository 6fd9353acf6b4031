"""Interpretability methods as pure functions on (torch module, batch of pixels in [0, 1]).

No gRPC, no files, no global state: the server is the one place these meet the models.

By family: :mod:`interp.attribution` (saliency, Grad-CAM), :mod:`interp.attacks` (FGSM / BIM /
PGD, minimal perturbations, DeepFool, robustness curves), :mod:`interp.synthesis` (feature
visualization, DeepDream, deep feature interpolation), :mod:`interp.dataset` (index pass, crops,
neighbours), :mod:`interp.embedding` (PCA / t-SNE maps) and :mod:`interp.rendering` (pictures).
Shared: :mod:`interp.single_pass` (probabilities, activations, kernels), :mod:`interp.hooks`,
:mod:`interp.validate`, :mod:`interp.progress`, :mod:`interp.errors`.
"""
