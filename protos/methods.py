"""The method table: one declaration per RPC of interp.v1, read by the server, the SDK and the CLI.

Each :class:`Method` names the RPC, its request and reply messages (for a streamed RPC the reply
is the final result carried by the stream's event message), where its parameters live, which
request fields this server caps (and with which ``Limits`` field), which are required, which
string fields take fixed values (``choices``, with ``defaults`` for an empty one), which Params
fields each ``method`` reads (``applies``), the CLI subcommand and its positional arguments, and
a one-line help. From it and the message descriptors:

- ``server/servicer.py`` builds every handler's shared path (model readiness, required fields,
  choices and applies, caps, params resolution with defaults, error mapping, stamping,
  streaming with progress and cancellation); what stays per RPC (``server/handlers/``, one
  module per domain) is the call into ``interp`` and the conversion of its result;
- ``client/calls.py`` fills requests from keyword arguments by field name (one message, or a
  stream of them where ``request_streamed``) and ``client/results/`` builds the reply's result
  from its descriptor; the typed methods of ``client/sdk.py`` are checked against this table;
- ``client/cli.py`` derives each subcommand's options from the request and Params fields, with
  the ``.proto`` comments (``protos/interp_docs.py``, generated) as help.

Adding an RPC: define it in ``protos/interp.proto`` (``make protos``) and its algorithm in
``interp/``; add one :class:`Method` here, one handler (``@handler("<Rpc>")``) in
``server/handlers/<domain>.py`` (the module of its domain, listed in ``server/handlers/__init__.py``;
a dataset-level job also states its cost in ``server/budgets.py``) and one typed method in
``client/sdk.py`` (for a streamed RPC its ``iter_`` form, with ``x = blocking(iter_x)``). Only where
it adds something: a result class in ``client/results/`` (behaviour such as properties; otherwise
one is made from the reply by ``client/results/generated.py``, ``save`` included) and a row in
``client/cli_commands.py`` (``-o``, extra options, a formatter in ``client/cli_text.py``;
otherwise the generic text). A live RPC (``live``: frames in, one answer per processed frame out,
bidirectional) has its handler return a session (``server.handlers.Live``) that the servicer's
``live`` path feeds, latest frame winning. A test of the method table keeps this recipe true.
This module imports only protobuf (the SDK installs without torch).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import Message

from protos import interp_pb2 as pb

__all__ = ["Cap", "Method", "METHODS", "STREAM_OPTION", "by_rpc", "by_command", "check_table"]


@dataclass(frozen=True)
class Cap:
    """A server cap on one request field: ``floor <= value <= Limits.<limit>``.

    For a repeated field the cap applies to its length. ``path`` fields are written
    ``params.steps`` (a field of the Params message) or ``epsilons`` (a request field).
    """

    limit: str
    floor: int = 1


@dataclass(frozen=True)
class Method:
    rpc: str
    request: type[Message]
    reply: type[Message]
    help: str
    event: type[Message] | None = None  # streamed RPCs: the event message (progress | result)
    params: str | None = None  # the request field holding the method's Params message
    caps: Mapping[str, Cap] = field(default_factory=dict)
    choices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # string fields with fixed values
    heavy: bool = False  # admitted through the server's capacity gate
    command: str = ""  # CLI subcommand ("" : none)
    positionals: tuple[str, ...] = ()  # CLI positional arguments, request field names in order
    sdk: str = ""  # the SDK method's name when it is not the RPC's in snake case
    required: tuple[str, ...] = ()  # request fields that must be given (the CLI makes them required options)
    # The value an empty choice field means (``metric`` "" is "cosine"); an empty choice field
    # without one is refused, naming the valid values.
    defaults: Mapping[str, str] = field(default_factory=dict)
    # Which Params fields each value of the request's ``method`` field reads: a field the chosen
    # method does not read is refused when set, and neither capped by its default nor echoed in
    # ``resolved``. Empty: every field applies to every method.
    applies: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    request_streamed: bool = False  # the client sends a stream of requests (the SDK takes an iterable of values)
    # Bidirectional and live (with request_streamed): each request message may carry a frame and
    # each answer (``reply``, no event wrapper) is one processed frame; latest frame wins.
    live: bool = False

    @property
    def streamed(self) -> bool:
        return self.event is not None

    @property
    def sdk_name(self) -> str:
        """The SDK method's name: ``sdk``, or the RPC in snake case (``VisualizeFilter`` -> ``visualize_filter``)."""
        return self.sdk or _snake(self.rpc)

    @property
    def params_message(self) -> type[Message] | None:
        if self.params is None:
            return None
        descriptor = self.request.DESCRIPTOR.fields_by_name[self.params].message_type
        if descriptor is None:
            raise TypeError(f"{self.rpc}: request field {self.params} is not a message")
        return _message_class(descriptor.name)


@functools.cache
def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _message_class(name: str) -> type[Message]:
    return getattr(pb, name)


STREAM_OPTION = "every_step"
"""The request field every streamed RPC has: true asks for one Progress event per step (the
server otherwise coalesces them to its ``progress_events_per_s``)."""

SALIENCY_METHODS = (
    "gradient",
    "gradient_x_input",
    "smoothgrad",
    "integrated_gradients",
    "guided_backprop",
    "grad_cam",
)
ATTACK_METHODS = ("fgsm", "bim", "pgd")
MINIMAL_ATTACK_METHODS = ("pgd", "fgsm", "bim", "deepfool_l2", "deepfool_linf")
DATASET_ATTACK_METHODS = ("fgsm", "bim", "pgd", "deepfool_linf", "deepfool_l2")
NEIGHBOR_METRICS = ("cosine", "l2")
EMBEDDING_METHODS = ("tsne", "pca")
SALIENCY_RENDERING = ("clip_percentile", "colormap")  # every method's picture
SALIENCY_APPLIES = {
    "gradient": SALIENCY_RENDERING,
    "gradient_x_input": SALIENCY_RENDERING,
    "smoothgrad": ("samples", "noise_level", "seed", "batch_size", *SALIENCY_RENDERING),
    "integrated_gradients": ("steps", "batch_size", *SALIENCY_RENDERING),
    "guided_backprop": SALIENCY_RENDERING,
    "grad_cam": ("layer", *SALIENCY_RENDERING),
}
ATTACK_APPLIES = {
    "fgsm": (),
    "bim": ("step_size", "steps", "random_start", "seed"),  # seed: with random_start (pgd's start)
    "pgd": ("step_size", "steps", "random_start", "seed"),
}
MINIMAL_ATTACK_APPLIES = {
    "pgd": ("step_size", "steps", "random_start", "seed", "max_epsilon"),
    "fgsm": ("max_epsilon",),
    "bim": ("step_size", "steps", "random_start", "seed", "max_epsilon"),
    "deepfool_l2": ("steps", "candidates", "overshoot"),
    "deepfool_linf": ("steps", "candidates", "overshoot"),
}
EMBEDDING_APPLIES = {"tsne": tuple(f.name for f in pb.EmbeddingParams.DESCRIPTOR.fields), "pca": ()}
EMBEDDING_CAPS = {
    "limit": Cap("max_embedding_points"),
    "params.perplexity": Cap("max_perplexity"),
    "params.iterations": Cap("max_steps"),
    "params.early_iterations": Cap("max_steps", floor=0),
}

METHODS: tuple[Method, ...] = (
    Method("ListModels", pb.ListModelsRequest, pb.ListModelsResponse, "list models and their status", command="models"),
    Method(
        "DescribeModel",
        pb.DescribeModelRequest,
        pb.DescribeModelResponse,
        "a model's layer catalogue, class labels and preprocessing",
        command="layers",
        positionals=("model",),
    ),
    Method(
        "GetServerInfo",
        pb.GetServerInfoRequest,
        pb.ServerInfo,
        "server version, device, limits, running and queued work, libraries",
        command="info",
        sdk="server_info",
    ),
    Method(
        "Classify",
        pb.ClassifyRequest,
        pb.ClassifyResponse,
        "top-k predictions for one image or many (one batched forward)",
        caps={"images": Cap("max_images_per_call")},
        command="classify",
        positionals=("model", "image"),
    ),
    Method(
        "Activations",
        pb.ActivationsRequest,
        pb.ActivationsResponse,
        "activation maps of one or more layers (one forward pass)",
        caps={"layers": Cap("max_layers"), "images": Cap("max_images_per_call")},
        required=("layers",),
        command="activations",
        positionals=("model", "image"),
    ),
    Method(
        "Kernels",
        pb.KernelsRequest,
        pb.KernelsResponse,
        "a conv layer's trained kernels as an image grid",
        command="kernels",
        positionals=("model", "layer"),
    ),
    Method(
        "Saliency",
        pb.SaliencyRequest,
        pb.SaliencyResponse,
        "saliency map for a class (overlay and heatmap)",
        params="params",
        caps={
            "params.samples": Cap("max_samples"),
            "params.steps": Cap("max_samples"),
            "images": Cap("max_images_per_call"),
        },
        choices={"method": SALIENCY_METHODS},
        applies=SALIENCY_APPLIES,
        heavy=True,
        command="saliency",
        positionals=("model", "image"),
    ),
    Method(
        "Attack",
        pb.AttackRequest,
        pb.AttackResponse,
        "FGSM / BIM / PGD adversarial examples at one or several epsilons",
        params="params",
        caps={
            "epsilons": Cap("max_epsilons"),
            "params.steps": Cap("max_steps"),
            "images": Cap("max_images_per_call"),
        },
        choices={"method": ATTACK_METHODS},
        applies=ATTACK_APPLIES,
        required=("epsilons",),
        heavy=True,
        command="attack",
        positionals=("model", "image"),
    ),
    Method(
        "VisualizeFilter",
        pb.VisualizeFilterRequest,
        pb.VisualizeFilterResult,
        "inputs that maximize channels of a layer (streamed)",
        event=pb.VisualizeFilterEvent,
        params="params",
        caps={
            "channels": Cap("max_channels"),
            "params.steps": Cap("max_steps"),
            "params.image_size": Cap("max_image_side", floor=16),
            "params.restarts": Cap("max_restarts"),
        },
        required=("channels",),
        heavy=True,
        command="visualize",
        positionals=("model", "layer"),
    ),
    Method(
        "DeepDream",
        pb.DeepDreamRequest,
        pb.DeepDreamResult,
        "DeepDream an image (streamed)",
        event=pb.DeepDreamEvent,
        params="params",
        caps={"params.iterations": Cap("max_steps"), "params.octaves": Cap("max_octaves")},
        required=("layers",),
        heavy=True,
        command="dream",
        sdk="dream",
        positionals=("model", "image"),
    ),
    Method(
        "InterpolateFeatures",
        pb.InterpolateFeaturesRequest,
        pb.InterpolateFeaturesResult,
        "deep feature interpolation along an attribute (streamed)",
        event=pb.InterpolateFeaturesEvent,
        params="params",
        caps={
            "alphas": Cap("max_alphas"),
            "params.iterations": Cap("max_steps"),
            "params.warm_iterations": Cap("max_steps"),
            "params.set_size": Cap("max_set_size"),
        },
        heavy=True,
        command="interpolate",
        sdk="interpolate",
        positionals=("model", "source"),
    ),
    Method(
        "MinimalAttack",
        pb.MinimalAttackRequest,
        pb.MinimalAttackResponse,
        "the smallest perturbation that fools the model: minimal eps (fgsm/bim/pgd) or DeepFool",
        params="params",
        caps={"params.steps": Cap("max_steps"), "images": Cap("max_images_per_call")},
        choices={"method": MINIMAL_ATTACK_METHODS},
        applies=MINIMAL_ATTACK_APPLIES,
        heavy=True,
        command="minimal-attack",
        positionals=("model", "image"),
    ),
    Method(
        "AttackDataset",
        pb.AttackDatasetRequest,
        pb.AttackDatasetResult,
        "robust accuracy vs epsilon and minimal perturbations over a dataset (streamed)",
        event=pb.AttackDatasetEvent,
        params="params",
        caps={
            "epsilons": Cap("max_epsilons"),
            "params.steps": Cap("max_steps"),
            "limit": Cap("max_dataset_images"),
        },
        choices={"methods": DATASET_ATTACK_METHODS},
        required=("methods", "epsilons"),
        heavy=True,
        command="robustness",
        positionals=("model", "dataset"),
    ),
    Method(
        "ListPrecomputed",
        pb.ListPrecomputedRequest,
        pb.ListPrecomputedResponse,
        "what the offline jobs stored for a model: its atlas layers (interp-atlas), its robustness results",
        command="precomputed",
        positionals=("model",),
    ),
    Method(
        "ListDatasets",
        pb.ListDatasetsRequest,
        pb.ListDatasetsResponse,
        "datasets this server can index (size, classes, which models they fit)",
        command="datasets",
    ),
    Method(
        "BuildIndex",
        pb.BuildIndexRequest,
        pb.BuildIndexResult,
        "index a dataset's activations: top-k inputs per unit and per-image features (streamed)",
        event=pb.BuildIndexEvent,
        params="params",
        caps={"layers": Cap("max_layers"), "params.k": Cap("max_index_k")},
        heavy=True,
        command="index",
        positionals=("model", "dataset"),
    ),
    Method(
        "TopActivations",
        pb.TopActivationsRequest,
        pb.TopActivationsResponse,
        "the dataset images that excite units most, cropped to their receptive fields (needs an index)",
        caps={"channels": Cap("max_channels"), "k": Cap("max_index_k")},
        required=("layer",),
        command="top",
        positionals=("model", "dataset"),
    ),
    Method(
        "NearestNeighbors",
        pb.NearestNeighborsRequest,
        pb.NearestNeighborsResponse,
        "the dataset images nearest to an image in a layer's features (exact; needs an index)",
        caps={"k": Cap("max_index_k")},
        choices={"metric": NEIGHBOR_METRICS},
        defaults={"metric": "cosine"},
        required=("layer", "dataset"),
        command="neighbors",
        positionals=("model", "image"),
    ),
    Method(
        "Embedding",
        pb.EmbeddingRequest,
        pb.EmbeddingResult,
        "a t-SNE or PCA map of a layer's features over a dataset: scatter by class, image atlas (streamed)",
        event=pb.EmbeddingEvent,
        params="params",
        caps=EMBEDDING_CAPS,
        choices={"method": EMBEDDING_METHODS},
        defaults={"method": "tsne"},
        applies=EMBEDDING_APPLIES,
        required=("layer",),
        heavy=True,
        command="embed",
        positionals=("model", "dataset"),
    ),
    Method(
        "PlaceImages",
        pb.PlaceImagesRequest,
        pb.PlaceImagesResponse,
        "place images on a cached Embedding map: their positions and nearest dataset points",
        params="params",
        caps={**EMBEDDING_CAPS, "images": Cap("max_place_images")},
        choices={"method": EMBEDDING_METHODS},
        defaults={"method": "tsne"},
        applies=EMBEDDING_APPLIES,
        required=("layer", "images"),
        heavy=True,
        command="place",
        positionals=("model", "dataset"),
    ),
    Method(
        "DatasetImages",
        pb.DatasetImagesRequest,
        pb.DatasetImagesResponse,
        "dataset images by position, or a page of one class's images, as the model's input",
        caps={"positions": Cap("max_images_per_call"), "limit": Cap("max_images_per_call")},
        command="dataset-images",
        positionals=("model", "dataset"),
    ),
    # The CLI's `watch` (video in, video out) lives in client/video.py, behind the `video` extra.
    Method(
        "Watch",
        pb.WatchRequest,
        pb.WatchResponse,
        "a layer's activation maps at frame rate from a stream of frames (latest frame wins)",
        heavy=True,
        request_streamed=True,
        live=True,
    ),
)

_BY_RPC = {m.rpc: m for m in METHODS}
_BY_COMMAND = {m.command: m for m in METHODS if m.command}


def by_rpc(name: str) -> Method:
    """The table entry of RPC ``name``; an unknown name -> ValueError listing the RPCs."""
    method = _BY_RPC.get(name)
    if method is None:
        raise ValueError(f"unknown RPC {name!r}; the RPCs: {', '.join(_BY_RPC)}")
    return method


def by_command(name: str) -> Method:
    return _BY_COMMAND[name]


def check_table() -> list[str]:
    """Disagreements between the table and the service descriptor (empty when they agree)."""
    problems = []
    service = pb.DESCRIPTOR.services_by_name["Interp"]
    declared = {m.name: m for m in service.methods}
    for name in declared.keys() - _BY_RPC.keys():
        problems.append(f"RPC {name} is in interp.proto but not in the method table")
    for name in _BY_RPC.keys() - declared.keys():
        problems.append(f"method table entry {name} is not an RPC of interp.proto")
    limits = {f.name for f in pb.Limits.DESCRIPTOR.fields}
    for method in METHODS:
        rpc = declared.get(method.rpc)
        if rpc is None:
            continue
        if rpc.input_type.full_name != method.request.DESCRIPTOR.full_name:
            problems.append(f"{method.rpc}: request is {rpc.input_type.full_name}")
        if rpc.server_streaming != (method.streamed or method.live):
            problems.append(f"{method.rpc}: streamed is {rpc.server_streaming} in interp.proto")
        if method.live and (method.streamed or not method.request_streamed):
            problems.append(f"{method.rpc}: a live method streams requests and answers without an event message")
        if rpc.client_streaming != method.request_streamed:
            problems.append(f"{method.rpc}: request_streamed is {rpc.client_streaming} in interp.proto")
        reply: Any = rpc.output_type
        if method.event is not None:
            if reply.full_name != method.event.DESCRIPTOR.full_name:
                problems.append(f"{method.rpc}: event is {reply.full_name}")
            reply = reply.fields_by_name["result"].message_type
        if reply.full_name != method.reply.DESCRIPTOR.full_name:
            problems.append(f"{method.rpc}: reply is {reply.full_name}")
        if method.streamed and STREAM_OPTION not in method.request.DESCRIPTOR.fields_by_name:
            problems.append(f"{method.rpc}: a streamed request without the common field {STREAM_OPTION}")
        for path, cap in method.caps.items():
            if cap.limit not in limits:
                problems.append(f"{method.rpc}: cap on {path} names unknown limit {cap.limit}")
            if _field(method, path) is None:
                problems.append(f"{method.rpc}: cap on unknown field {path}")
        for name in (*method.positionals, *method.choices, *method.required, *method.defaults):
            if name not in method.request.DESCRIPTOR.fields_by_name:
                problems.append(f"{method.rpc}: unknown request field {name}")
        for name, value in method.defaults.items():
            if value not in method.choices.get(name, ()):
                problems.append(f"{method.rpc}: default {name}={value} is not one of its choices")
        if method.applies:
            params = method.params_message
            known = set() if params is None else {f.name for f in params.DESCRIPTOR.fields}
            if set(method.applies) != set(method.choices.get("method", ())):
                problems.append(f"{method.rpc}: applies does not name exactly the choices of method")
            for value, names in method.applies.items():
                for name in set(names) - known:
                    problems.append(f"{method.rpc}: applies[{value}] names unknown Params field {name}")
    return problems


def _field(method: Method, path: str) -> Any:
    head, _, rest = path.partition(".")
    descriptor = method.request.DESCRIPTOR.fields_by_name.get(head)
    if descriptor is None or not rest:
        return descriptor
    if descriptor.message_type is None:
        return None
    return descriptor.message_type.fields_by_name.get(rest)
