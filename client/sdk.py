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

import ipaddress
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

import grpc
import numpy as np
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from client.errors import Internal, InterpError, Unavailable, from_item_error, from_rpc_error
from client.images import ImageLike, add_image, image_message
from client.results import (
    ITEM_RESULTS,
    RESULTS,
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
    ProgressEvent,
    SaliencyResult,
    ServerInfo,
    TopActivationsResult,
)
from protos import interp_pb2 as pb
from protos import interp_pb2_grpc as pb_grpc
from protos.methods import STREAM_OPTION, Method, by_rpc

__all__ = [
    "InterpClient",
    "EventStream",
    "build_request",
    "channel_options",
    "DEFAULT_TARGET",
    "DEFAULT_MAX_MESSAGE_BYTES",
]

DEFAULT_TARGET = "localhost:50051"
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024

R = TypeVar("R")
ProgressCallback = Callable[[ProgressEvent], object]


class _Unset:
    def __repr__(self) -> str:
        return "<client default>"


#: Marks "use the client's default timeout" (None already means "no deadline").
_UNSET: Any = _Unset()


def channel_options(
    target: str,
    *,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    server_name: str | None = None,
    extra: Sequence[tuple[str, Any]] = (),
) -> list[tuple[str, Any]]:
    """The gRPC channel options the SDK uses for a target.

    Args:
        target: e.g. ``"localhost:50051"`` or ``"dns:///interp:50051"``. A ``dns:`` target gets the
            ``round_robin`` load-balancing policy, so calls spread over every address the name
            resolves to (e.g. ``docker compose up --scale interp=N``).
        max_message_bytes: cap on sent and received message size.
        server_name: TLS only: the name to verify the server certificate against, when it differs
            from the host in ``target``.
        extra: raw gRPC options; they override the ones above.
    """
    options: dict[str, Any] = {
        "grpc.max_send_message_length": int(max_message_bytes),
        "grpc.max_receive_message_length": int(max_message_bytes),
    }
    if target.startswith("dns:"):
        options["grpc.lb_policy_name"] = "round_robin"
    if server_name:
        options["grpc.ssl_target_name_override"] = server_name
    for key, value in extra:
        options[key] = value
    return list(options.items())


class EventStream(Generic[R]):
    """Iterator over a streaming call: :class:`ProgressEvent` objects, then the final result.

    The call starts at the first ``next()``. Closing the stream (``close()``, leaving a ``with``
    block, breaking out of a ``for`` loop and dropping the stream, or garbage collection) before the
    result arrives cancels the call, which stops the server's work.
    """

    def __init__(self, start: Callable[[], Any], convert: Callable[[Any], R]) -> None:
        self._start = start
        self._convert = convert
        self._call: Any = None
        self._finished = False
        self.result: R | None = None  #: the final result, once received

    def __iter__(self) -> EventStream[R]:
        return self

    def __next__(self) -> ProgressEvent | R:
        if self._finished:
            raise StopIteration
        if self._call is None:
            self._call = self._start()
        while True:
            try:
                event = next(self._call)
            except StopIteration:
                self._finished = True
                raise Internal("the server ended the stream without a final result") from None
            except grpc.RpcError as error:
                self._finished = True
                raise from_rpc_error(error) from error
            kind = event.WhichOneof("event")
            if kind == "progress":
                return ProgressEvent.from_proto(event.progress)
            if kind == "result":
                self._finished = True
                self.result = self._convert(event.result)
                self._drain()
                return self.result
            # An event kind this client does not know (a newer server): skip it.

    def _drain(self) -> None:
        # The result is the last message; reading the end of the stream lets the call finish with
        # OK instead of being cancelled (which the server would count as a cancelled request).
        try:
            next(self._call)
        except StopIteration:
            return
        except grpc.RpcError:
            return
        self._call.cancel()

    def cancel(self) -> None:
        """Cancel the call if it is still running (no-op once the result has arrived)."""
        if self._call is not None and not self._finished:
            self._call.cancel()
        self._finished = True

    close = cancel

    def __enter__(self) -> EventStream[R]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: nothing left to cancel reliably
            pass


def _run(stream: EventStream[R], progress: ProgressCallback | None) -> R:
    """Consume a stream, feeding progress events to the callback; return the final result."""
    with stream:
        for item in stream:
            if isinstance(item, ProgressEvent):
                if progress is not None:
                    progress(item)
            else:
                return item
    raise Internal("the server ended the stream without a final result")


class InterpClient:
    """A connection to an interp.v1 server.

    Args:
        target: ``host:port``, or ``dns:///host:port`` to balance calls round-robin over every
            address the name resolves to.
        timeout: deadline in seconds for each unary call (None: no deadline).
        stream_timeout: deadline in seconds for each streaming call (default None: no client
            deadline; the server applies its own default deadline).
        token: sent as ``authorization: Bearer <token>`` metadata on every call.
        ca_file: PEM file with the root certificate(s) to trust; switches the channel to TLS.
        tls: use TLS with the system's root certificates (implied by ``ca_file`` and ``cert_file``).
        cert_file, key_file: PEM client certificate (chain) and its private key, presented to a
            server that requires client certificates (mutual TLS, ``--tls-client-ca``); together.
        server_name: TLS only: the certificate name to expect, when it differs from the target host.
        max_message_bytes: cap on sent and received message size (default 64 MiB).
        options: extra raw gRPC channel options, e.g. ``[("grpc.keepalive_time_ms", 30000)]``.

    Every method also takes ``timeout=`` to override the deadline for that one call.
    Use as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        timeout: float | None = 60.0,
        stream_timeout: float | None = None,
        token: str | None = None,
        ca_file: str | os.PathLike | None = None,
        tls: bool = False,
        server_name: str | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        options: Sequence[tuple[str, Any]] = (),
        cert_file: str | os.PathLike | None = None,
        key_file: str | os.PathLike | None = None,
    ) -> None:
        if not target:
            raise ValueError("target must be 'host:port' or 'dns:///host:port'")
        if (cert_file is None) != (key_file is None):
            raise ValueError("cert_file and key_file go together (the client certificate and its private key)")
        self.target = target
        self.timeout = timeout
        self.stream_timeout = stream_timeout
        self._metadata = _auth_metadata(token)
        channel_opts = channel_options(
            target, max_message_bytes=max_message_bytes, server_name=server_name, extra=options
        )
        self.tls = bool(tls or ca_file is not None or cert_file is not None)
        if self.tls:
            roots = Path(ca_file).read_bytes() if ca_file is not None else None
            chain = Path(cert_file).read_bytes() if cert_file is not None else None
            key = Path(key_file).read_bytes() if key_file is not None else None
            credentials = grpc.ssl_channel_credentials(
                root_certificates=roots, private_key=key, certificate_chain=chain
            )
            self._channel = grpc.secure_channel(target, credentials, options=channel_opts)
        else:
            if server_name:
                raise ValueError("server_name only applies to TLS; pass ca_file= or tls=True")
            if self._metadata is not None and not is_loopback_target(target):
                warnings.warn(
                    f"sending a bearer token over a plaintext channel to {target}: anyone on the path can read "
                    "it; use TLS (ca_file= or tls=True)",
                    stacklevel=2,
                )
            self._channel = grpc.insecure_channel(target, options=channel_opts)
        self._stub = pb_grpc.InterpStub(self._channel)
        self._cap: int | None = None  # the server's max_images_per_call, asked on the first many-image call

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        """Close the channel; calls in flight are cancelled."""
        self._channel.close()

    def __enter__(self) -> InterpClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"InterpClient({self.target!r}, tls={self.tls}, token={'set' if self._metadata else 'none'})"

    @property
    def channel(self) -> grpc.Channel:
        """The underlying gRPC channel (e.g. for the health service)."""
        return self._channel

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Block until the channel connects; :class:`client.errors.Unavailable` after ``timeout`` seconds."""
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise Unavailable(f"no server answered at {self.target} within {timeout:g} s") from None

    # -- models and server ---------------------------------------------------------------------
    # Every method below is one line into _invoke/_stream_of: the request is filled from the
    # keyword arguments by field name (protos.methods.METHODS + the message descriptors) and the
    # reply wrapped in the result class registered for the RPC (client.results.RESULTS). The
    # signatures stay explicit for readers and type checkers; tests check them against the table.

    def list_models(self, *, timeout: float | None = _UNSET) -> list[ModelInfo]:
        """Every model the server knows, READY or UNAVAILABLE (with the reason)."""
        return self.call("ListModels", {}, timeout)  # type: ignore[no-any-return]

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
        values = {"model": model, "top_k": top_k, "include_input": include_input}
        return self._one_or_many("Classify", image, values, timeout)

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
            image: one image (-> :class:`ActivationsResult`) or several (-> a list, see :meth:`classify`).
            layers: module paths or aliases, e.g. ``["conv3_1", "features.17"]``; a layer named
                twice is sent once.
            top_k: also rank channels by mean activation and render those (server default: all, unranked).
            include_tensors: False returns statistics and PNGs only (much smaller responses).
            include_input: echo the preprocessed input (default true).
            include_pngs: render the channel grids and the input PNG (default true).
        """
        values = {
            "model": model,
            "layers": layers,
            "top_k": top_k,
            "include_tensors": include_tensors,
            "include_input": include_input,
            "include_pngs": include_pngs,
        }
        return self._one_or_many("Activations", image, values, timeout)

    def kernels(self, model: str, layer: str, *, timeout: float | None = _UNSET) -> KernelsResult:
        """A conv layer's trained weights (O, I, kH, kW) and their rendering."""
        return self.call("Kernels", {"model": model, "layer": layer}, timeout)

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
            image: one image (-> :class:`SaliencyResult`) or several (-> a list, see :meth:`classify`).
            method: gradient | gradient_x_input | smoothgrad | integrated_gradients |
                guided_backprop | grad_cam.
            target: class index or exact label (case-insensitive); None: the predicted class
                (each image's own). A target applies to every image of a call.
            include_input: echo the preprocessed input (default true).
            include_pngs: render the heatmap, overlay and input PNGs (default true); false
                returns the map and attribution only.
            **params: layer (grad_cam), samples, noise_level (smoothgrad, relative), steps
                (integrated_gradients), seed, batch_size, clip_percentile, colormap. A parameter
                the method does not read is refused (InvalidArgument naming it).
        """
        values = {
            "model": model,
            "method": method,
            "target": target,
            "include_input": include_input,
            "include_pngs": include_pngs,
        }
        return self._one_or_many("Saliency", image, values, timeout, params)

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
            image: one image (-> :class:`AttackResult`) or several (-> a list, see :meth:`classify`);
                each image is attacked as it would be alone.
            method: fgsm | bim | pgd.
            epsilon: one value or several; one outcome per value, in order.
            target: class index or label for a targeted attack; None: untargeted.
            label: untargeted: the true class (index or label) to move away from; None: the
                model's prediction. A clean misclassification is reported as success without
                perturbation (``clean_misclassified``). Target and label apply to every image.
            include_input: echo the preprocessed input (default true).
            include_pngs: render the adversarial, perturbation and input PNGs (default true).
            **params: step_size, steps, random_start, seed (bim/pgd; fgsm has none).
        """
        values = {
            "model": model,
            "method": method,
            "epsilons": epsilon,
            "target": target,
            "include_input": include_input,
            "include_pngs": include_pngs,
        }
        if label is not None:
            values["label"] = label
        return self._one_or_many("Attack", image, values, timeout, params)

    def minimal_attack(
        self,
        image: ImageLike,
        *,
        model: str,
        method: str = "pgd",
        label: int | str | None = None,
        target: int | str | None = None,
        timeout: float | None = _UNSET,
        **params: Any,
    ) -> MinimalAttackResult:
        """The closest image on which the model fails: the smallest 8-bit L-inf eps, or DeepFool.

        Args:
            method: fgsm | bim | pgd (smallest eps = k/255 by bisection, exact on the 8-bit grid)
                | deepfool_l2 | deepfool_linf.
            label: the true class (index or label); None: the model's prediction. A clean
                misclassification is a success at level 0.
            target: fgsm/bim/pgd: the smallest eps reaching this class instead.
            **params: step_size, steps, random_start, seed, max_epsilon (fgsm/bim/pgd);
                steps, candidates, overshoot (DeepFool).
        """
        values = {"model": model, "image": image, "method": method, "label": label, "target": target}
        return self.call("MinimalAttack", {k: v for k, v in values.items() if v is not None}, timeout, params=params)

    # -- iterative methods (streaming) -----------------------------------------------------------
    # Each has a blocking form (progress= callback) and an iter_ form: an EventStream of
    # ProgressEvent objects, then the result. Use the iter_ form in a ``with`` block: leaving it
    # (break, exception, return) cancels the call and the server stops computing within one step.

    def iter_visualize_filter(
        self,
        model: str,
        layer: str,
        channels: int | str | Sequence[int],
        *,
        timeout: float | None = _UNSET,
        **params: Any,
    ) -> EventStream[FilterVisualization]:
        """Like :meth:`visualize_filter`, as an iterator of ProgressEvent then the result."""
        values = {"model": model, "layer": layer, "channels": channels}
        return self.call_stream("VisualizeFilter", values, timeout, params)

    def visualize_filter(
        self,
        model: str,
        layer: str,
        channels: int | str | Sequence[int],
        *,
        progress: ProgressCallback | None = None,
        timeout: float | None = _UNSET,
        **params: Any,
    ) -> FilterVisualization:
        """Inputs that maximize channels of a layer (activation maximization), optimized as one batch.

        Args:
            channels: one channel index, several, or a string like ``"0,1,2"``.
            progress: called with each :class:`ProgressEvent`; raising from it cancels the call.
            **params: objective ("channel" | "neuron"), steps, image_size, learning_rate, seed,
                parameterization ("fourier" | "pixel"), transforms, preview_every, restarts.
        """
        return _run(self.iter_visualize_filter(model, layer, channels, timeout=timeout, **params), progress)

    def iter_dream(
        self,
        image: ImageLike,
        *,
        model: str,
        layers: str | Sequence[str | tuple[str, float]] | Mapping[str, float],
        timeout: float | None = _UNSET,
        **params: Any,
    ) -> EventStream[DreamResult]:
        """Like :meth:`dream`, as an iterator of ProgressEvent then the result."""
        return self.call_stream("DeepDream", {"model": model, "image": image, "layers": layers}, timeout, params)

    def dream(
        self,
        image: ImageLike,
        *,
        model: str,
        layers: str | Sequence[str | tuple[str, float]] | Mapping[str, float],
        progress: ProgressCallback | None = None,
        timeout: float | None = _UNSET,
        **params: Any,
    ) -> DreamResult:
        """DeepDream: amplify what the given layers see in the image.

        Args:
            layers: a layer, a list of layers (or ``(layer, weight)`` pairs), or ``{layer: weight}``.
            progress: called with each :class:`ProgressEvent`; raising from it cancels the call.
            **params: octaves, octave_scale, iterations (per octave), step_size, jitter, seed,
                preview_every.
        """
        return _run(self.iter_dream(image, model=model, layers=layers, timeout=timeout, **params), progress)

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
        timeout: float | None = _UNSET,
        **params: Any,
    ) -> EventStream[InterpolationResult]:
        """Like :meth:`interpolate`, as an iterator of ProgressEvent then the result."""
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
            _fill_set(sets, "positive", positive)
            _fill_set(sets, "negative", negative)
            values["sets"] = sets
        else:
            raise ValueError("give a direction: positive= and negative= (images or class names), or target=")
        return self.call_stream("InterpolateFeatures", values, timeout, params)

    def interpolate(
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
    ) -> InterpolationResult:
        """Deep feature interpolation (Upchurch et al. 2017): move the source along a feature direction.

        The direction is either attribute sets (``positive`` and ``negative``: lists of images, or
        for models trained in-repo a class name each, e.g. ``"ankle boot"`` / ``"sneaker"``) or a
        ``target`` image.

        Args:
            layers: feature layers phi (server default per model).
            alphas: interpolation strengths (server default 0, 0.5, 1, 1.5, 2); one image each.
            progress: called with each :class:`ProgressEvent`; raising from it cancels the call.
            **params: iterations, warm_iterations, tv_weight, tv_beta, seed, set_size,
                normalize_attribute, preview_every.
        """
        stream = self.iter_interpolate(
            source,
            model=model,
            layers=layers,
            alphas=alphas,
            positive=positive,
            negative=negative,
            target=target,
            timeout=timeout,
            **params,
        )
        return _run(stream, progress)

    def iter_attack_dataset(
        self,
        model: str,
        *,
        dataset: str,
        method: str | Sequence[str] = "pgd",
        epsilons: float | Sequence[float],
        limit: int | None = None,
        true_labels: bool = True,
        timeout: float | None = _UNSET,
        **params: Any,
    ) -> EventStream[AttackDatasetResult]:
        """Like :meth:`attack_dataset`, as an iterator of ProgressEvent then the result."""
        values: dict[str, Any] = {
            "model": model,
            "dataset": dataset,
            "methods": [method] if isinstance(method, str) else list(method),
            "epsilons": epsilons,
            "true_labels": true_labels,
        }
        if limit is not None:
            values["limit"] = limit
        return self.call_stream("AttackDataset", values, timeout, params)

    def attack_dataset(
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
    ) -> AttackDatasetResult:
        """Robust accuracy vs epsilon and per-image minimal perturbations over a served dataset.

        Args:
            dataset: a registered dataset (``list_datasets()``): fashion-mnist-test, fashion-mnist-train or an
                operator image folder; with true labels its class names must be the model's classes.
            method: one method or several (one curve each): fgsm, bim, pgd, deepfool_linf
                (L-inf, eps applied as floor(255 eps)/255), or deepfool_l2 alone (L2 eps).
            epsilons: the curve's points, pixel units.
            limit: the first N images (server default 1000).
            true_labels: attack away from the dataset's labels (default) or the predictions.
            progress: called with each :class:`ProgressEvent`; raising from it cancels the call.
            **params: step_size, steps, random_start, seed, candidates, overshoot, batch_size.
        """
        stream = self.iter_attack_dataset(
            model,
            dataset=dataset,
            method=method,
            epsilons=epsilons,
            limit=limit,
            true_labels=true_labels,
            timeout=timeout,
            **params,
        )
        return _run(stream, progress)

    # -- dataset-level views ---------------------------------------------------------------------

    def list_datasets(self, *, timeout: float | None = _UNSET) -> list[DatasetInfo]:
        """Datasets the server can index: name, size, class names, which models' input they fit."""
        return self.call("ListDatasets", {}, timeout)  # type: ignore[no-any-return]

    def iter_build_index(
        self,
        model: str,
        dataset: str,
        *,
        layers: str | Sequence[str] | None = None,
        timeout: float | None = _UNSET,
        **params: Any,
    ) -> EventStream[IndexBuild]:
        """Like :meth:`build_index`, as an iterator of ProgressEvent (step = images done) then the result."""
        values = {"model": model, "dataset": dataset, "layers": layers}
        return self.call_stream("BuildIndex", values, timeout, params)

    def build_index(
        self,
        model: str,
        dataset: str,
        *,
        layers: str | Sequence[str] | None = None,
        progress: ProgressCallback | None = None,
        timeout: float | None = _UNSET,
        **params: Any,
    ) -> IndexBuild:
        """Index a dataset's activations on the server (reused when an index with the same key exists).

        Args:
            dataset: a name from :meth:`list_datasets`.
            layers: default every conv, ReLU, pool and linear layer.
            progress: called with each :class:`ProgressEvent` (step = images done, objective = images/s).
            **params: k (entries per channel, default 64), batch_size (default 1024, fewer for large
                inputs).
        """
        return _run(self.iter_build_index(model, dataset, layers=layers, timeout=timeout, **params), progress)

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
        values = {"model": model, "dataset": dataset, "layer": layer, "channels": channels, "k": k}
        values["entry_pngs"] = entry_pngs
        values["projections"] = projections
        return self.call("TopActivations", values, timeout)

    def nearest_neighbors(
        self,
        image: ImageLike,
        *,
        model: str,
        dataset: str,
        layer: str,
        k: int | None = None,
        metric: str | None = None,
        timeout: float | None = _UNSET,
    ) -> NeighborsResult:
        """The k dataset images nearest to ``image`` in ``layer``'s features (exact; cosine or l2)."""
        values = {"model": model, "dataset": dataset, "layer": layer, "image": image, "k": k, "metric": metric}
        return self.call("NearestNeighbors", values, timeout)

    def iter_embedding(
        self,
        model: str,
        *,
        dataset: str,
        layer: str,
        method: str | None = None,
        limit: int | None = None,
        timeout: float | None = _UNSET,
        **params: Any,
    ) -> EventStream[EmbeddingResult]:
        """Like :meth:`embedding`, as an iterator of ProgressEvent then the result."""
        values = {"model": model, "dataset": dataset, "layer": layer, "method": method, "limit": limit}
        return self.call_stream("Embedding", values, timeout, params)

    def embedding(
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
    ) -> EmbeddingResult:
        """A 2-D map of ``layer``'s per-image features over ``dataset`` (cached on the server).

        Args:
            method: "tsne" (default) or "pca".
            limit: the first N images of the dataset (default all of it, up to the server's cap).
            progress: called with each :class:`ProgressEvent`: stage "features" (step = images, when
                the layer is not indexed yet), then "pca", "affinities", and the t-SNE iterations
                with the KL divergence as the objective.
            **params: t-SNE: perplexity (30), iterations (500), early_iterations (250), pca_dims (50), seed (0).
        """
        stream = self.iter_embedding(model, dataset=dataset, layer=layer, method=method, limit=limit,
                                     timeout=timeout, **params)  # fmt: skip
        return _run(stream, progress)

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
        values = {
            "model": model,
            "dataset": dataset,
            "layer": layer,
            "method": method,
            "limit": limit,
            "images": images,
        }
        return self.call("PlaceImages", values, timeout, params=params)

    # -- plumbing ------------------------------------------------------------------------------

    def call(
        self,
        rpc: str,
        values: Mapping[str, Any],
        timeout: float | None = _UNSET,
        *,
        params: Mapping[str, Any] | None = None,
        wrap: bool = True,
    ) -> Any:
        """Any unary RPC of the method table by name: ``c.call("Classify", {"model": "lenet", "image": a})``.

        ``values`` fill request fields by name (converted as in :func:`build_request`), ``params``
        the method's Params message; the reply comes back as its result class (``wrap=False``:
        the raw message). The typed methods above are this, with signatures.
        """
        method = by_rpc(rpc)
        request = build_request(method, values, params or {}, _caller(method))
        reply = self._unary(rpc, request, timeout)
        return RESULTS[rpc](reply) if wrap else reply

    def call_many(
        self,
        rpc: str,
        images: Images,
        values: Mapping[str, Any],
        timeout: float | None = _UNSET,
        *,
        params: Mapping[str, Any] | None = None,
    ) -> list[Any]:
        """A many-image RPC (Classify, Activations, Saliency, Attack) over any number of images.

        The images (a list, tuple, iterator or (N, H, W[, C]) array; an iterator is read lazily)
        are sent in calls of at most the server's ``max_images_per_call`` images (asked once per
        client with GetServerInfo), each one batched computation on the server. Returns one entry
        per image, in order: its result, or the :class:`client.errors.InterpError` that image
        alone failed with (unreadable or too large; not raised, its ``field`` is ``images[i]``
        counted over all the images given). An error of the call itself (unknown model, bad
        parameter, server unreachable) is raised as for one image. ``timeout`` applies to each call.
        """
        method = by_rpc(rpc)
        convert = ITEM_RESULTS.get(rpc) or _each(RESULTS[rpc])
        results: list[Any] = []
        for chunk in _chunks(_image_items(images), self._images_per_call()):
            request = build_request(method, {**values, "images": chunk}, params or {}, _caller(method))
            reply = self._unary(rpc, request, timeout)
            if len(reply.items) != len(chunk):
                raise Internal(f"{rpc}: the server answered {len(reply.items)} items for {len(chunk)} images")
            offset = len(results)
            failed = [item.HasField("error") for item in reply.items]
            answered = [item for item, bad in zip(reply.items, failed, strict=True) if not bad]
            answers = iter(convert(answered, reply.stamp))
            for i, (item, bad) in enumerate(zip(reply.items, failed, strict=True)):
                if bad:
                    field = f"images[{offset + i}]"
                    results.append(from_item_error(item.error, field=field, request_id=reply.stamp.request_id))
                else:
                    results.append(next(answers))
        return results

    def _one_or_many(
        self,
        rpc: str,
        image: ImageLike | Images,
        values: Mapping[str, Any],
        timeout: float | None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        if is_many(image):
            return self.call_many(rpc, image, values, timeout, params=params)  # type: ignore[arg-type]
        return self.call(rpc, {**values, "image": image}, timeout, params=params)

    def _images_per_call(self) -> int:
        if self._cap is None:
            limits = self.server_info().limits
            self._cap = max(1, int(limits.get("max_images_per_call", 0)) or 1)
        return self._cap

    def call_stream(
        self,
        rpc: str,
        values: Mapping[str, Any],
        timeout: float | None = _UNSET,
        params: Mapping[str, Any] | None = None,
    ) -> EventStream[Any]:
        """Any streamed RPC of the method table by name, as an :class:`EventStream`.

        ``every_step=True`` among ``params`` (every streamed method takes it) asks for one progress
        event per step; by default the server sends at most its ``progress_events_per_s`` a second
        (plus the first and last step and every preview).
        """
        method = by_rpc(rpc)
        params = dict(params or {})
        if STREAM_OPTION in params:
            values = {**values, STREAM_OPTION: params.pop(STREAM_OPTION)}
        request = build_request(method, values, params, _caller(method))
        return self._stream(rpc, request, RESULTS[rpc], timeout)

    def _unary(self, rpc: str, request: Message, timeout: float | None) -> Any:
        method = getattr(self._stub, rpc)
        deadline = self.timeout if timeout is _UNSET else timeout
        try:
            return method(request, timeout=deadline, metadata=self._metadata)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from error

    def _stream(self, rpc: str, request: Message, convert: Callable[[Any], R], timeout: float | None) -> EventStream[R]:
        method = getattr(self._stub, rpc)
        deadline = self.stream_timeout if timeout is _UNSET else timeout
        return EventStream(lambda: method(request, timeout=deadline, metadata=self._metadata), convert)


def _each(convert: Callable[[Any], R]) -> Callable[[Sequence[Any], pb.ModelStamp], list[R]]:
    """Many answers, each converted alone under the call's stamp (what ITEM_RESULTS does faster)."""

    def each(items: Sequence[Any], stamp: pb.ModelStamp) -> list[R]:
        out = []
        for item in items:
            item.stamp.CopyFrom(stamp)
            out.append(convert(item))
        return out

    return each


def _caller(method: Method) -> str:
    return method.sdk_name


def build_request(method: Method, values: Mapping[str, Any], params: Mapping[str, Any], caller: str) -> Message:
    """Fill ``method.request`` by field name: ``values`` are request fields, ``params`` the Params fields.

    None leaves a field unset (the server's default). Each value is converted by the field's
    type: Image fields take any :data:`ImageLike`, Target fields an index or a label, repeated
    fields one value or a sequence (integers also ``"0,1,2"``), LayerWeight lists names,
    ``(name, weight)`` pairs or a mapping. Unknown names raise TypeError listing the valid ones.
    """
    request = method.request()
    fields = method.request.DESCRIPTOR.fields_by_name
    for name, value in values.items():
        if value is None:
            continue
        if name not in fields:
            raise TypeError(f"{caller}(): {method.request.__name__} has no field {name!r}")
        _set_field(request, fields[name], value, caller)
    if params:
        if method.params is None:
            raise TypeError(f"{caller}() takes no method parameters, got {', '.join(map(repr, params))}")
        message_cls = type(getattr(request, method.params))
        getattr(request, method.params).CopyFrom(_params_message(message_cls, params, caller))
    return request


def _set_field(message: Message, field: Any, value: Any, caller: str) -> None:
    name = field.name
    kind = field.message_type.name if field.message_type is not None else None
    if field.is_repeated:
        target = getattr(message, name)
        if kind == "Image":
            if isinstance(value, np.ndarray):
                images: list[Any] = list(value) if value.ndim == 4 else [value]
            else:
                images = [value] if isinstance(value, (str, *_SINGLE_IMAGE)) else list(value)
            for image in images:
                add_image(target, image)
        elif kind == "LayerWeight":
            target.extend(_layer_weights(value))
        elif field.type == FieldDescriptor.TYPE_STRING:
            target.extend(_names(name, value))
        elif field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
            target.extend(_floats(name, value))
        elif field.type in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64):
            target.extend(_ints(name, value))
        else:
            raise TypeError(f"{caller}(): field {name} is not settable from Python values")
        return
    if kind == "Image":
        getattr(message, name).CopyFrom(image_message(value))
    elif kind == "Target":
        _set_target(message, value, name)
    elif kind is not None:
        if not isinstance(value, Message):
            raise TypeError(f"{caller}(): {name} must be a {kind} message, got {type(value).__name__}")
        getattr(message, name).CopyFrom(value)
    else:
        if field.type in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64):
            value = _int(name, value)
        try:
            setattr(message, name, _plain(value))
        except (TypeError, ValueError) as error:
            expected = _TYPE_NAMES.get(field.type, "scalar")
            raise TypeError(f"{caller}(): {name}={value!r} has the wrong type ({expected} expected): {error}") from None


# ---------------------------------------------------------------------------------------------
# Argument conversion (fail fast, with the expected form named)
# ---------------------------------------------------------------------------------------------


def is_loopback_target(target: str) -> bool:
    """True when a gRPC target can only reach this machine (loopback address, localhost, unix socket).

    Accepts ``host:port``, ``[v6]:port``, ``dns:///host:port``, ``dns://authority/host:port``,
    ``ipv4:addr:port,...`` / ``ipv6:[addr]:port,...`` (every address must be loopback) and ``unix:``.
    """
    scheme, sep, after = target.strip().partition(":")
    if sep and scheme in ("unix", "unix-abstract"):
        return True
    if sep and scheme == "dns":
        names = [after[3:] if after.startswith("///") else after.removeprefix("//").partition("/")[2]]
    elif sep and scheme in ("ipv4", "ipv6"):
        names = after.split(",")
    else:
        names = [target.strip()]
    return all(_is_loopback_host(_host_of(name)) for name in names)


def _host_of(address: str) -> str:
    if address.startswith("["):
        return address[1:].partition("]")[0]
    return address.partition(":")[0] if address.count(":") == 1 else address  # bare IPv6: no port


def _is_loopback_host(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # any other name may resolve anywhere


def _auth_metadata(token: str | None) -> tuple[tuple[str, str], ...] | None:
    if token is None:
        return None
    token = token.strip()
    if not token:
        raise ValueError("token is empty")
    if any(ord(ch) < 0x21 or ord(ch) > 0x7E for ch in token):
        raise ValueError("token must be printable ASCII without spaces")
    return (("authorization", f"Bearer {token}"),)


def _plain(value: Any) -> Any:
    """numpy scalars -> Python scalars (protobuf setters want the latter)."""
    return value.item() if isinstance(value, np.generic) else value


def _params_message(cls: type[Message], params: Mapping[str, Any], caller: str) -> Message:
    """Fill a *Params message from keyword arguments; unknown names -> TypeError listing the valid ones."""
    valid = [field.name for field in cls.DESCRIPTOR.fields]
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise TypeError(
            f"{caller}() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}; "
            f"valid parameters: {', '.join(valid)}"
        )
    message = cls()
    for name, value in params.items():
        if value is None:
            continue  # the server's default
        try:
            setattr(message, name, _plain(value))
        except (TypeError, ValueError) as error:
            expected = _TYPE_NAMES.get(cls.DESCRIPTOR.fields_by_name[name].type, "scalar")
            raise TypeError(
                f"{caller}(): parameter {name}={value!r} has the wrong type ({expected} expected): {error}"
            ) from None
    return message


_TYPE_NAMES = {
    FieldDescriptor.TYPE_DOUBLE: "float",
    FieldDescriptor.TYPE_FLOAT: "float",
    FieldDescriptor.TYPE_INT64: "int",
    FieldDescriptor.TYPE_INT32: "int",
    FieldDescriptor.TYPE_BOOL: "bool",
    FieldDescriptor.TYPE_STRING: "str",
}


def _set_target(request: Message, target: int | str | None, name: str = "target") -> None:
    """Fill the Target field ``name`` (``target``, or ``label`` for a true class) from an index or a label."""
    if target is None:
        return
    if isinstance(target, bool):
        raise TypeError(f"{name} must be a class index (int) or label (str), not bool")
    field = getattr(request, name)
    if isinstance(target, int | np.integer):
        field.index = int(target)
    elif isinstance(target, str):
        if not target.strip():
            raise ValueError(f"{name} label is empty")
        field.label = target
    else:
        raise TypeError(f"{name} must be a class index (int) or label (str), got {type(target).__name__}")


def _int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int, got {value!r}")
    return int(value)


def _ints(name: str, values: int | str | Sequence[int]) -> list[int]:
    if isinstance(values, str):  # "0,1,2" (the CLI's --channel 0,1,2)
        try:
            items: list[Any] = [int(part) for part in values.split(",") if part.strip()]
        except ValueError:
            raise ValueError(f"{name} must be integers like 0,1,2, got {values!r}") from None
    else:
        items = [values] if isinstance(values, int | np.integer) else list(values)
    if not items:
        raise ValueError(f"{name} must name at least one value")
    return [_int(name, v) for v in items]


def _floats(name: str, values: float | Sequence[float]) -> list[float]:
    if isinstance(values, int | float | np.number):
        items = [values]
    elif isinstance(values, np.ndarray):
        items = values.ravel().tolist()
    else:
        items = list(values)
    if not items:
        raise ValueError(f"{name} must name at least one value")
    out = []
    for v in items:
        if isinstance(v, bool) or not isinstance(v, int | float | np.number):
            raise TypeError(f"{name} must be numbers, got {v!r}")
        out.append(float(v))
    return out


def _names(name: str, values: str | Sequence[str]) -> list[str]:
    items = [values] if isinstance(values, str) else list(values)
    if not items:
        raise ValueError(f"{name} must name at least one layer")
    for v in items:
        if not isinstance(v, str) or not v:
            raise TypeError(f"{name} must be non-empty strings, got {v!r}")
    return items


LayerSpec = str | Sequence[str | tuple[str, float]] | Mapping[str, float]


def _layer_weights(layers: LayerSpec) -> list[pb.LayerWeight]:
    if isinstance(layers, str):
        pairs: list[tuple[str, float | None]] = [(layers, None)]
    elif isinstance(layers, Mapping):
        pairs = [(name, weight) for name, weight in layers.items()]
    else:
        pairs = []
        for item in layers:
            if isinstance(item, str):
                pairs.append((item, None))
            elif isinstance(item, tuple | list) and len(item) == 2:
                pairs.append((item[0], item[1]))
            else:
                raise TypeError(f"layers items must be names or (name, weight) pairs, got {item!r}")
    if not pairs:
        raise ValueError("layers must name at least one layer")
    messages = []
    for name, weight in pairs:
        if not isinstance(name, str) or not name:
            raise TypeError(f"layer names must be non-empty strings, got {name!r}")
        message = pb.LayerWeight(layer=name)
        if weight is not None:
            if isinstance(weight, bool) or not isinstance(weight, int | float | np.number):
                raise TypeError(f"layer weight for {name!r} must be a number, got {weight!r}")
            message.weight = float(weight)
        messages.append(message)
    return messages


_SINGLE_IMAGE = (bytes, bytearray, memoryview, os.PathLike, pb.Image)

#: Several images for one of the many-image methods: a list, a tuple, any iterable (read lazily)
#: or a (N, H, W[, C]) array.
Images = Iterable[ImageLike]


def is_many(image: object) -> bool:
    """Whether an image argument holds several images (a list, tuple, iterator or 4-D array)."""
    if isinstance(image, np.ndarray):
        return image.ndim == 4
    return isinstance(image, Iterable) and not isinstance(image, (str, *_SINGLE_IMAGE))


def _image_items(images: Images) -> Iterator[ImageLike]:
    if isinstance(images, np.ndarray):
        return iter(list(images))
    return iter(images)


def _chunks(items: Iterator[ImageLike], size: int) -> Iterator[list[ImageLike]]:
    """Consecutive lists of at most ``size`` images, as taken (converted into each call's request)."""
    chunk: list[ImageLike] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _fill_set(sets: pb.AttributeSets, which: str, value: str | ImageLike | Sequence[ImageLike]) -> None:
    """positive/negative: a class name (str), one image, a (N, H, W[, C]) array, or a list of images."""
    if isinstance(value, str):
        if not value.strip():
            raise ValueError(f"{which} class name is empty")
        setattr(sets, f"{which}_class", value)
        return
    if isinstance(value, _SINGLE_IMAGE):
        images: list[Any] = [value]
    elif isinstance(value, np.ndarray):
        images = list(value) if value.ndim == 4 else [value]
    else:
        images = list(value)
    if not images:
        raise ValueError(f"{which} set is empty")
    target = getattr(sets, which)
    for image in images:
        add_image(target, image)
