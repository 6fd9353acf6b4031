"""Python SDK for the interp.v1 service: numpy in, dataclasses with numpy arrays and PNGs out.

    from client import InterpClient

    with InterpClient("localhost:50051") as c:
        c.list_models()
        top = c.classify("cat.png", model="vgg16").top
        sal = c.saliency("cat.png", model="vgg16", method="smoothgrad", samples=20)
        sal.map            # (224, 224) float32
        sal.save("out/")   # overlay.png, heatmap.png, input.png
        dream = c.dream("cat.png", model="vgg16", layers={"relu4_3": 1.0}, progress=print)
        for event in c.iter_visualize_filter("vgg16", "conv3_1", [0, 1], steps=64):
            ...            # ProgressEvent ..., then the FilterVisualization

Failures raise the typed exceptions of :mod:`client.errors`; arguments the SDK can check
itself (image arrays, unknown keyword parameters) raise ValueError / TypeError before any call.
Parameters left out (or None) take the server's documented defaults, and every result echoes the
values actually used in ``result.params``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from client.calls import UNSET as _UNSET
from client.calls import RpcClient
from client.channel import DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_TARGET, channel_options, is_loopback_target
from client.errors import InterpError
from client.images import ImageLike
from client.requests import Images, build_request, fill_set, is_many
from client.results import (
    ActivationsResult,
    AttackDatasetResult,
    AttackResult,
    ClassifyResult,
    DatasetInfo,
    DreamResult,
    EmbeddingResult,
    FilterVisualization,
    IndexBuild,
    InterpolationResult,
    KernelsResult,
    MinimalAttackResult,
    ModelDescription,
    ModelInfo,
    NeighborsResult,
    PlacementResult,
    PrecomputedResult,
    SaliencyResult,
    ServerInfo,
    TopActivationsResult,
)
from client.streams import EventStream, ProgressCallback, blocking
from client.watch import WatchFrame, WatchSession, watch_frames
from protos import interp_pb2 as pb

__all__ = [
    "InterpClient",
    "EventStream",
    "build_request",
    "channel_options",
    "is_loopback_target",
    "is_many",
    "DEFAULT_TARGET",
    "DEFAULT_MAX_MESSAGE_BYTES",
]

_fill_set = fill_set  # the name the CLI used
_NOT_FIELDS = frozenset({"self", "timeout", "progress", "params"})


def _request(arguments: Mapping[str, Any], *leave: str, **renamed: str) -> dict[str, Any]:
    """A typed method's request values: its arguments (``locals()`` as the method starts) by name,
    but for those that fill no request field (self, timeout, progress, ``**params`` and ``leave``);
    ``renamed`` gives an argument's field where the names differ (``epsilon="epsilons"``). None
    leaves a field unset (see :func:`build_request`)."""
    return {renamed.get(k, k): v for k, v in arguments.items() if k not in _NOT_FIELDS and k not in leave}


class InterpClient(RpcClient):
    """A connection to an interp.v1 server, with one typed method per RPC of the method table.

    Args: see :class:`client.calls.RpcClient` (target, timeout, stream_timeout, token, TLS, options).
    Every method also takes ``timeout=`` to override the deadline for that one call. Use as a
    context manager, or call :meth:`close`.

    What several methods share, said once here:

    - ``image`` of classify, activations, saliency, attack and minimal_attack: one image (-> its
      result) or several (-> a list, see :meth:`classify`).
    - ``include_input``: echo the preprocessed input (default true; classify: false).
    - ``progress`` of the streamed methods: called with each :class:`ProgressEvent`; raising from
      it cancels the call.
    """

    # -- models and server ---------------------------------------------------------------------
    # Every method below is one line into call/call_stream/_one_or_many: the request is filled
    # from the method's own arguments by field name (_request; protos.methods.METHODS + the
    # message descriptors) and the reply wrapped in the result class registered for the RPC
    # (client.results.RESULTS). The signatures stay explicit for readers and type checkers;
    # tests check them against the table.

    def list_models(self, *, timeout: float | None = _UNSET) -> list[ModelInfo]:
        """Every model the server knows, READY, LOADING or UNAVAILABLE (with the reason)."""
        return self.call("ListModels", {}, timeout)

    def describe_model(self, name: str, *, timeout: float | None = _UNSET) -> ModelDescription:
        """A model's layer catalogue (shapes, receptive fields, parameters), class labels and preprocessing."""
        return self.call("DescribeModel", {"model": name}, timeout)

    def labels(self, model: str, *, timeout: float | None = _UNSET) -> tuple[str, ...]:
        """A model's class labels in index order (ImageNet's 1000 for vgg16/alexnet)."""
        return self.describe_model(model, timeout=timeout).labels

    def server_info(self, *, timeout: float | None = _UNSET) -> ServerInfo:
        """Server version, device, limits in force, running and queued work, library versions, RPCs."""
        return self.call("GetServerInfo", {}, timeout)

    def classify(
        self,
        image: ImageLike | Images,
        *,
        model: str,
        top_k: int | None = None,
        include_input: bool | None = None,
        timeout: float | None = _UNSET,
    ) -> ClassifyResult | list[ClassifyResult | InterpError]:
        """Top-k predictions for one image, or for many (one batched forward per call).

        Args:
            image: a path, encoded bytes or a numpy array (see :func:`client.images.image_message`);
                any image array a result returns works too. Several images (a list, a tuple, any
                iterator or a (N, H, W[, C]) array): a list of results comes back, see
                :meth:`call_many`.
            model: a served model's name (case-insensitive).
            top_k: number of predictions (server default 5; above the class count: every class).
            include_input: also return the preprocessed input and its PNG (default false).

        Returns:
            :class:`ClassifyResult`, or for several images a list of ClassifyResult or, where that
            image failed, the :class:`client.errors.InterpError` it failed with (not raised).
        """
        return self._one_or_many("Classify", image, _request(locals(), "image"), timeout)

    # -- single-pass methods -------------------------------------------------------------------

    def activations(
        self,
        image: ImageLike | Images,
        *,
        model: str,
        layers: str | Sequence[str],
        top_k: int | None = None,
        include_tensors: bool = True,
        include_input: bool | None = None,
        include_pngs: bool | None = None,
        timeout: float | None = _UNSET,
    ) -> ActivationsResult | list[ActivationsResult | InterpError]:
        """Activations of one or more layers (names or aliases) from a single forward pass.

        Args:
            layers: module paths or aliases, e.g. ``["conv3_1", "features.17"]``; a layer named
                twice is sent once.
            top_k: also rank channels by mean activation and render those (server default: all, unranked).
            include_tensors: False returns statistics and PNGs only (much smaller responses).
            include_pngs: render the channel grids and the input PNG (default true).
        """
        return self._one_or_many("Activations", image, _request(locals(), "image"), timeout)

    def kernels(self, model: str, layer: str, *, timeout: float | None = _UNSET) -> KernelsResult:
        """A conv layer's trained weights (O, I, kH, kW) and their rendering."""
        return self.call("Kernels", _request(locals()), timeout)

    def saliency(
        self,
        image: ImageLike | Images,
        *,
        model: str,
        method: str = "gradient",
        target: int | str | None = None,
        include_input: bool | None = None,
        include_pngs: bool | None = None,
        timeout: float | None = _UNSET,
        **params: Any,
    ) -> SaliencyResult | list[SaliencyResult | InterpError]:
        """A saliency map explaining one class, for one image or several.

        Args:
            method: gradient | gradient_x_input | smoothgrad | integrated_gradients |
                guided_backprop | grad_cam.
            target: class index or exact label (case-insensitive); None: the predicted class
                (each image's own). A target applies to every image of a call.
            include_pngs: render the heatmap, overlay and input PNGs (default true); false
                returns the map and attribution only.
            **params: layer (grad_cam), samples, noise_level (smoothgrad, relative), steps
                (integrated_gradients), seed, batch_size, clip_percentile, colormap. A parameter
                the method does not read is refused (InvalidArgument naming it).
        """
        return self._one_or_many("Saliency", image, _request(locals(), "image"), timeout, params)

    def attack(
        self,
        image: ImageLike | Images,
        *,
        model: str,
        method: str = "fgsm",
        epsilon: float | Sequence[float],
        target: int | str | None = None,
        label: int | str | None = None,
        include_input: bool | None = None,
        include_pngs: bool | None = None,
        timeout: float | None = _UNSET,
        **params: Any,
    ) -> AttackResult | list[AttackResult | InterpError]:
        """An L-infinity adversarial attack, at one epsilon or a sweep (pixel units, each in (0, 1]).

        Args:
            image: each image is attacked as it would be alone.
            method: fgsm | bim | pgd.
            epsilon: one value or several; one outcome per value, in order.
            target: class index or label for a targeted attack; None: untargeted.
            label: untargeted: the true class (index or label) to move away from; None: the
                model's prediction. A clean misclassification is reported as success without
                perturbation (``clean_misclassified``). Target and label apply to every image.
            include_pngs: render the adversarial, perturbation and input PNGs (default true).
            **params: step_size, steps, random_start, seed (bim/pgd; fgsm has none).
        """
        values = _request(locals(), "image", epsilon="epsilons")
        return self._one_or_many("Attack", image, values, timeout, params)

    def minimal_attack(
        self,
        image: ImageLike | Images,
        *,
        model: str,
        method: str = "pgd",
        label: int | str | None = None,
        target: int | str | None = None,
        include_input: bool | None = None,
        include_pngs: bool | None = None,
        timeout: float | None = _UNSET,
        **params: Any,
    ) -> MinimalAttackResult | list[MinimalAttackResult | InterpError]:
        """The closest image on which the model fails: the smallest 8-bit L-inf eps, or DeepFool.

        Args:
            image: the images of a call are searched together, each as it would be alone.
            method: fgsm | bim | pgd (smallest eps = k/255 by bisection, exact on the 8-bit grid)
                | deepfool_l2 | deepfool_linf.
            label: the true class (index or label); None: the model's prediction. A clean
                misclassification is a success at level 0.
            target: fgsm/bim/pgd: the smallest eps reaching this class instead. Target and label
                apply to every image.
            include_input: echo the preprocessed input (default true); false leaves it out.
            include_pngs: render the adversarial, perturbation and input PNGs (default true); false
                returns the adversarial image as an array only (an evaluation over many images).
            **params: step_size, steps, random_start, seed, max_epsilon (fgsm/bim/pgd);
                steps, candidates, overshoot (DeepFool).
        """
        return self._one_or_many("MinimalAttack", image, _request(locals(), "image"), timeout, params)

    # -- iterative methods (streaming) -----------------------------------------------------------
    # Each is declared once, as its iter_ form: an EventStream of ProgressEvent objects, then the
    # result; the blocking form (``X = blocking(iter_X)``) takes the same arguments and returns the
    # result. Use the iter_ form in a ``with`` block: leaving it
    # (break, exception, return) cancels the call and the server stops computing within one step.

    def iter_visualize_filter(
        self,
        model: str,
        layer: str,
        channels: int | str | Sequence[int],
        *,
        progress: ProgressCallback | None = None,
        timeout: float | None = _UNSET,
        **params: Any,
    ) -> EventStream[FilterVisualization]:
        """Inputs that maximize channels of a layer (activation maximization), optimized as one batch.

        Args:
            channels: one channel index, several, or a string like ``"0,1,2"``.
            **params: objective ("channel" | "neuron"), steps, image_size, learning_rate, seed,
                parameterization ("fourier" | "pixel"), transforms, preview_every, restarts.
        """
        return self.call_stream("VisualizeFilter", _request(locals()), timeout, params, progress)

    visualize_filter = blocking(iter_visualize_filter)

    def iter_dream(
        self,
        image: ImageLike,
        *,
        model: str,
        layers: str | Sequence[str | tuple[str, float]] | Mapping[str, float],
        progress: ProgressCallback | None = None,
        timeout: float | None = _UNSET,
        **params: Any,
    ) -> EventStream[DreamResult]:
        """DeepDream: amplify what the given layers see in the image.

        Args:
            layers: a layer, a list of layers (or ``(layer, weight)`` pairs), or ``{layer: weight}``.
            **params: octaves, octave_scale, iterations (per octave), step_size, jitter, seed,
                preview_every.
        """
        return self.call_stream("DeepDream", _request(locals()), timeout, params, progress)

    dream = blocking(iter_dream)

    def iter_interpolate(
        self,
        source: ImageLike,
        *,
        model: str,
        layers: str | Sequence[str] | None = None,
        alphas: float | Sequence[float] | None = None,
        positive: str | ImageLike | Sequence[ImageLike] | None = None,
        negative: str | ImageLike | Sequence[ImageLike] | None = None,
        target: ImageLike | None = None,
        progress: ProgressCallback | None = None,
        timeout: float | None = _UNSET,
        **params: Any,
    ) -> EventStream[InterpolationResult]:
        """Deep feature interpolation (Upchurch et al. 2017): move the source along a feature direction.

        The direction is either attribute sets (``positive`` and ``negative``: lists of images, or
        for models trained in-repo a class name each, e.g. ``"ankle boot"`` / ``"sneaker"``) or a
        ``target`` image.

        Args:
            layers: feature layers phi (server default per model).
            alphas: interpolation strengths (server default 0, 0.5, 1, 1.5, 2); one image each.
            **params: iterations, warm_iterations, tv_weight, tv_beta, seed, set_size,
                normalize_attribute, preview_every.
        """
        values: dict[str, Any] = {"model": model, "source": source, "layers": layers, "alphas": alphas}
        has_sets = positive is not None or negative is not None
        if target is not None and has_sets:
            raise ValueError("give either target= (an image) or positive=/negative= (sets), not both")
        if target is not None:
            values["target"] = target
        elif has_sets:
            if positive is None or negative is None:
                raise ValueError("attribute sets need both positive= and negative= (images or class names)")
            sets = pb.AttributeSets()
            fill_set(sets, "positive", positive)
            fill_set(sets, "negative", negative)
            values["sets"] = sets
        else:
            raise ValueError("give a direction: positive= and negative= (images or class names), or target=")
        return self.call_stream("InterpolateFeatures", values, timeout, params, progress)

    interpolate = blocking(iter_interpolate)

    def iter_attack_dataset(
        self,
        model: str,
        *,
        dataset: str,
        method: str | Sequence[str] = "pgd",
        epsilons: float | Sequence[float],
        limit: int | None = None,
        true_labels: bool = True,
        progress: ProgressCallback | None = None,
        timeout: float | None = _UNSET,
        **params: Any,
    ) -> EventStream[AttackDatasetResult]:
        """Robust accuracy vs epsilon and per-image minimal perturbations over a served dataset.

        Args:
            dataset: a registered dataset (``list_datasets()``): fashion-mnist-test, fashion-mnist-train or an
                operator image folder; with true labels its class names must be the model's classes.
            method: one method or several (one curve each): fgsm, bim, pgd, deepfool_linf
                (L-inf, eps applied as floor(255 eps)/255), or deepfool_l2 alone (L2 eps).
            epsilons: the curve's points, pixel units.
            limit: the first N images (server default 1000).
            true_labels: attack away from the dataset's labels (default) or the predictions.
            **params: step_size, steps, random_start, seed, candidates, overshoot, batch_size.
        """
        return self.call_stream("AttackDataset", _request(locals(), method="methods"), timeout, params, progress)

    attack_dataset = blocking(iter_attack_dataset)

    def list_precomputed(
        self, model: str, *, layer: str = "", dataset: str = "", timeout: float | None = _UNSET
    ) -> PrecomputedResult:
        """What the offline jobs stored for ``model`` beside the server's index directory.

        Args:
            layer: "" for every layer's atlas (``interp-atlas``); a layer for its atlas with the
                stored channel batches (a ``visualize_filter`` of one of them is answered from it).
            dataset: "" for the robustness results (``interp-robustness``) on every dataset.
        """
        return self.call("ListPrecomputed", _request(locals()), timeout)

    # -- dataset-level views ---------------------------------------------------------------------

    def list_datasets(self, *, timeout: float | None = _UNSET) -> list[DatasetInfo]:
        """Datasets the server can index: name, size, class names, which models' input they fit."""
        return self.call("ListDatasets", {}, timeout)

    def iter_build_index(
        self,
        model: str,
        dataset: str,
        *,
        layers: str | Sequence[str] | None = None,
        progress: ProgressCallback | None = None,
        timeout: float | None = _UNSET,
        **params: Any,
    ) -> EventStream[IndexBuild]:
        """Index a dataset's activations on the server (reused when an index with the same key exists).

        Args:
            dataset: a name from :meth:`list_datasets`.
            layers: default every conv, ReLU, pool and linear layer.
            progress: called with each :class:`ProgressEvent` (step = images done, objective = images/s).
            **params: k (entries per channel, default 64), batch_size (default: as many images as
                64 x 256 x 256 pixels, at most 2,048: LeNet 2,048, 224-px models 83).
        """
        return self.call_stream("BuildIndex", _request(locals()), timeout, params, progress)

    build_index = blocking(iter_build_index)

    def top_activations(
        self,
        model: str,
        *,
        dataset: str,
        layer: str,
        channels: int | str | Sequence[int] | None = None,
        k: int | None = None,
        entry_pngs: bool | None = None,
        projections: bool | None = None,
        timeout: float | None = _UNSET,
    ) -> TopActivationsResult:
        """Per channel, the top-k dataset images with their receptive-field crops (needs an index).

        Args:
            channels: default the first 16. k: default 9, at most the index's k.
            entry_pngs: also a PNG of each crop and of each whole image with its box (default false).
            projections: also each unit's guided-backprop projection over its crop (default false).
        """
        return self.call("TopActivations", _request(locals()), timeout)

    def nearest_neighbors(
        self,
        image: ImageLike,
        *,
        model: str,
        dataset: str,
        layer: str,
        k: int | None = None,
        metric: str | None = None,
        include_input: bool | None = None,
        include_pngs: bool | None = None,
        timeout: float | None = _UNSET,
    ) -> NeighborsResult:
        """The k dataset images nearest to ``image`` in ``layer``'s features (exact; cosine or l2).

        ``include_pngs=False`` leaves out the neighbours' PNGs, the grid and the input's PNG (the
        neighbours' arrays stay); ``include_input=False`` the echo of the preprocessed input."""
        return self.call("NearestNeighbors", _request(locals()), timeout)

    def dataset_images(self, model: str, *, dataset: str, positions: int | Sequence[int] | None = None,
                       label: int | str | None = None, offset: int | None = None, limit: int | None = None,
                       timeout: float | None = _UNSET) -> Any:  # fmt: skip
        """Dataset images as ``model``'s input, by position, or a page (``offset``, ``limit``: default 24)
        of every image or of class ``label``'s (index or class name); each with its position, label,
        class name, array and PNG."""
        if label is not None:
            label = self.dataset_class(dataset, label)
        return self.call("DatasetImages", _request(locals()), timeout)

    def iter_embedding(
        self,
        model: str,
        *,
        dataset: str,
        layer: str,
        method: str | None = None,
        limit: int | None = None,
        progress: ProgressCallback | None = None,
        timeout: float | None = _UNSET,
        **params: Any,
    ) -> EventStream[EmbeddingResult]:
        """A 2-D map of ``layer``'s per-image features over ``dataset`` (cached on the server).

        Args:
            method: "tsne" (default) or "pca".
            limit: the first N images of the dataset (default all of it, up to the server's cap).
            progress: called with each :class:`ProgressEvent`: stage "features" (step = images, when
                the layer is not indexed yet), then "pca", "affinities", and the t-SNE iterations
                with the KL divergence as the objective.
            **params: t-SNE: perplexity (30), iterations (500), early_iterations (250), pca_dims (50), seed (0).
        """
        return self.call_stream("Embedding", _request(locals()), timeout, params, progress)

    embedding = blocking(iter_embedding)

    def place_images(
        self,
        images: ImageLike | Sequence[ImageLike],
        *,
        model: str,
        dataset: str,
        layer: str,
        method: str | None = None,
        limit: int | None = None,
        timeout: float | None = _UNSET,
        **params: Any,
    ) -> PlacementResult:
        """Place images on the map an identical :meth:`embedding` call made (FailedPrecondition before it)."""
        return self.call("PlaceImages", _request(locals()), timeout, params=params)

    # -- live view -------------------------------------------------------------------------------

    def watch_session(
        self,
        *,
        model: str,
        layer: str,
        unit: int | None = None,
        top_k: int | None = 5,
        float16: bool | None = None,
        timeout: float | None = None,
        max_in_flight: int | None = 2,
    ) -> WatchSession:
        """Open a Watch stream: ``send`` frames, ``change`` layer or unit mid-stream, iterate answers.

        ``timeout`` is the whole stream's deadline (default none: the server ends a stream that
        sends nothing for its ``stream_stall_s``). ``max_in_flight`` bounds the frames sent and not
        yet answered (the next one waits for an answer; ``None``: no bound, the server's
        latest-frame-wins alone keeps up).
        """
        stub = self._stub.Watch
        return WatchSession(
            lambda requests: stub(requests, timeout=timeout, metadata=self._metadata),
            model=model,
            layer=layer,
            unit=unit,
            top_k=top_k,
            float16=float16,
            max_in_flight=max_in_flight,
        )

    def watch(
        self,
        frames: Iterable[ImageLike],
        *,
        model: str,
        layer: str,
        unit: int | None = None,
        top_k: int | None = 5,
        float16: bool | None = None,
        timeout: float | None = None,
        max_in_flight: int | None = 2,
    ) -> Iterator[WatchFrame]:
        """A layer's activation maps for each processed frame of ``frames`` (arrays, paths or bytes).

        Frames are sent from a thread of their own; the server computes the newest frame it has
        and skips the older ones waiting (``WatchFrame.skipped``), so the answers keep up with the
        source; at most two frames are unanswered at a time (the sender waits for an answer).
        ``top_k=0`` stops the forward at the layer (no classes). Leaving the loop ends the
        stream. A frame the server cannot read gets ``WatchFrame.error`` and the stream goes on.
        """

        session = dict(locals())  # watch_session's arguments, as given
        del session["self"], session["frames"]
        return watch_frames(lambda: self.watch_session(**session), frames)
