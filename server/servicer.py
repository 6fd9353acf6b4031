"""The interp.v1 servicer: decode -> call interp -> encode. Errors are mapped in server.errors."""

from __future__ import annotations

import logging
import platform
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import PackageNotFoundError, version

import grpc
import numpy as np
import torch

from interp import rendering
from models.hub import LoadedModel, ModelHub
from protos import interp_pb2 as pb
from protos import interp_pb2_grpc as pb_grpc
from server import convert
from server.capacity import CapacityGate
from server.config import ServerConfig
from server.errors import BadRequest, grpc_errors
from server.imaging import load_input
from server.interceptors import Metrics

log = logging.getLogger("interp.server")

API_VERSION = "interp.v1"
LIBRARIES = ("torch", "torchvision", "captum", "grpcio", "protobuf", "numpy", "opencv-python-headless")


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


class Call:
    """Per-request context handed to the helpers: deadline, cancellation, request id, timing."""

    def __init__(self, context: grpc.ServicerContext, request_id: str, default_deadline_s: float) -> None:
        self.context = context
        self.request_id = request_id
        self.started = time.perf_counter()
        remaining = context.time_remaining()
        # No client deadline (or an absurd one): the server's default deadline applies.
        budget = default_deadline_s if remaining is None or remaining > default_deadline_s else remaining
        self.deadline = self.started + budget

    def should_stop(self) -> bool:
        return not self.context.is_active() or time.perf_counter() > self.deadline

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000.0


class InterpServicer(pb_grpc.InterpServicer):
    def __init__(
        self, config: ServerConfig, hub: ModelHub, *, metrics: Metrics | None = None, auth_required: bool = False
    ) -> None:
        self.config = config
        self.hub = hub
        self.limits = config.limits
        self.auth_required = auth_required
        self.gate = CapacityGate(self.limits.max_concurrent_heavy, self.limits.max_queued_heavy, metrics)
        # Streamed loops run on long-lived threads: a fresh thread per request would also pay for
        # a fresh OpenMP team in torch (measured 2.5x per LeNet step with 2 torch threads). One
        # thread per gRPC worker, so a submission never waits here: admission is the gate's job.
        self._workers = ThreadPoolExecutor(max_workers=config.worker_threads, thread_name_prefix="interp-work")
        self._datasets: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # training sets, read once
        self._datasets_lock = threading.Lock()

    # -- helpers -------------------------------------------------------------------------------

    def _call(self, context: grpc.ServicerContext, request_id: str) -> Call:
        return Call(context, request_id, self.limits.default_deadline_s)

    def _input(self, model: LoadedModel, image: pb.Image, what: str = "image") -> torch.Tensor:
        if not image.WhichOneof("source"):
            raise BadRequest(f"{what} is required: set Image.encoded (file bytes) or Image.pixels (a tensor)")
        return load_input(image, model.spec.preprocessing, self.limits.max_image_pixels, self.config.device)

    @staticmethod
    def _input_message(x: torch.Tensor) -> pb.PreprocessedInput:
        image = x[0].detach().cpu()
        return pb.PreprocessedInput(
            tensor=convert.tensor(image), png=rendering.encode_png(rendering.to_uint8_image(image))
        )

    @staticmethod
    def _stamp(model: LoadedModel, call: Call) -> pb.ModelStamp:
        return pb.ModelStamp(
            model=model.spec.name,
            pretrained=model.pretrained,
            weights_sha256=model.weights.sha256,
            request_id=call.request_id,
            elapsed_ms=call.elapsed_ms(),
        )

    @staticmethod
    def _prediction(model: LoadedModel, index: int, probability: float) -> pb.Prediction:
        return pb.Prediction(index=int(index), label=model.spec.labels[int(index)], probability=float(probability))

    def _probabilities(self, module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.softmax(module(x), dim=1)

    def _target_index(self, model: LoadedModel, target: pb.Target) -> int | None:
        """Target message -> class index; None when unset (the caller uses the prediction)."""
        kind = target.WhichOneof("kind")
        labels = model.spec.labels
        if kind == "index":
            if not 0 <= target.index < len(labels):
                raise BadRequest(f"target class index {target.index} out of range 0..{len(labels) - 1}")
            return int(target.index)
        if kind == "label":
            wanted = target.label.strip().lower()
            for index, label in enumerate(labels):
                if label.lower() == wanted:
                    return index
            shown = ", ".join(labels) if len(labels) <= 20 else ", ".join(labels[:20]) + ", ..."
            raise BadRequest(f"unknown class label {target.label!r} for {model.spec.name}; valid labels: {shown}")
        return None

    def _layer(self, model: LoadedModel, name: str, what: str = "layer") -> str:
        if not name:
            raise BadRequest(f"{what} is required; see DescribeModel for {model.spec.name}'s layers")
        return model.resolve_layer(name)

    def _check_cap(self, name: str, value: int, cap: int, floor: int = 1) -> None:
        if not floor <= value <= cap:
            raise BadRequest(f"{name} must be in {floor}..{cap}, got {value}")

    def _check_caps(self, message, caps: dict[str, tuple[int, int]], resolved=None) -> None:
        """This server's caps on a Params message: ``caps`` maps field -> (floor, cap).

        Called before the method resolves its parameters (so a value the client set is judged
        against the tighter server cap, which the message names) and again with ``resolved``
        (so a model default above an operator's cap is refused saying it is a default).
        """
        for name, (floor, cap) in caps.items():
            if message.HasField(name):
                self._check_cap(name, getattr(message, name), cap, floor)
            elif resolved is not None:
                value = getattr(resolved, name)
                if not floor <= value <= cap:
                    raise BadRequest(
                        f"the default {name} ({value}) is above this server's limit {cap}: set {name} to at most {cap}"
                    )

    # -- models and server ---------------------------------------------------------------------

    @grpc_errors
    def ListModels(self, request, context, *, request_id):
        return pb.ListModelsResponse(models=[convert.model_info(m) for m in self.hub.all()])

    @grpc_errors
    def DescribeModel(self, request, context, *, request_id):
        model = self.hub.get(request.model)
        return pb.DescribeModelResponse(
            model=convert.model_info(model),
            layers=[convert.layer(info) for info in model.layers],
            labels=list(model.spec.labels),
            preprocessing=convert.preprocessing(model),
            default_gradcam_layer=model.spec.default_gradcam_layer,
        )

    @grpc_errors
    def GetServerInfo(self, request, context, *, request_id):
        limits = pb.Limits(**{f.name: getattr(self.limits, f.name) for f in pb.Limits.DESCRIPTOR.fields})
        from server import __version__

        libraries = {name: package_version(name) for name in LIBRARIES}
        libraries["python"] = platform.python_version()
        return pb.ServerInfo(
            version=__version__,
            api_version=API_VERSION,
            device=self.config.device,
            limits=limits,
            libraries=libraries,
            models=self.hub.names(),
            worker_threads=self.config.worker_threads,
            auth_required=self.auth_required,
            tls=self.config.tls_cert is not None,
            implemented_rpcs=[m.name for m in pb.DESCRIPTOR.services_by_name["Interp"].methods],
        )

    @grpc_errors
    def Classify(self, request, context, *, request_id):
        call = self._call(context, request_id)
        model = self.hub.ready(request.model)
        module = model.require_ready()
        x = self._input(model, request.image)
        top_k = request.top_k if request.HasField("top_k") else 5
        self._check_cap("top_k", top_k, model.spec.num_classes)
        with torch.no_grad():
            logits = module(x)[0]
        probs = torch.softmax(logits, dim=0)
        values, indices = probs.topk(top_k)
        return pb.ClassifyResponse(
            predictions=[self._prediction(model, i, p) for i, p in zip(indices.tolist(), values.tolist(), strict=True)],
            input=self._input_message(x),
            logits=convert.tensor(logits),
            stamp=self._stamp(model, call),
        )

    # -- single-pass methods --------------------------------------------------------------------

    @grpc_errors
    def Activations(self, request, context, *, request_id):
        from interp.activations import activations

        call = self._call(context, request_id)
        model = self.hub.ready(request.model)
        module = model.require_ready()
        if not request.layers:
            raise BadRequest(f"at least one layer is required; see DescribeModel for {model.spec.name}'s layers")
        paths = [self._layer(model, name) for name in request.layers]
        x = self._input(model, request.image)
        top_k = request.top_k if request.HasField("top_k") else 0
        include = request.include_tensors if request.HasField("include_tensors") else True
        result = activations(module, x, paths, top_k=top_k)
        layers = []
        for requested, path in zip(request.layers, paths, strict=True):
            act = result[path]
            top = act.top_channels[0].tolist() if top_k else []
            sample = act.tensor[0]
            grid = b""
            if sample.dim() == 3:
                grid = rendering.encode_png(rendering.channel_grid(sample, top or None))
            layers.append(
                pb.LayerActivation(
                    layer=path,
                    requested=requested,
                    activation=convert.tensor(sample) if include else None,
                    channel_mean=convert.tensor(act.channel_mean[0]),
                    channel_max=convert.tensor(act.channel_max[0]),
                    top_channels=top,
                    grid_png=grid,
                )
            )
        return pb.ActivationsResponse(
            stamp=self._stamp(model, call), input=self._input_message(x), layers=layers, resolved_top_k=top_k
        )

    @grpc_errors
    def Kernels(self, request, context, *, request_id):
        from interp.kernels import kernels

        call = self._call(context, request_id)
        model = self.hub.ready(request.model)
        module = model.require_ready()
        path = self._layer(model, request.layer)
        result = kernels(module, path)
        # Colour patches only where the kernel's 3 input channels ARE the image's R, G, B.
        first_conv = next((info.name for info in model.layers if info.has_kernels), None)
        rgb = result.rgb and model.spec.input_shape[0] == 3 and path == first_conv
        return pb.KernelsResponse(
            stamp=self._stamp(model, call),
            layer=path,
            weights=convert.tensor(result.weights),
            bias=convert.tensor(result.bias) if result.bias is not None else None,
            rgb=rgb,
            grid_png=rendering.encode_png(rendering.kernel_grid(result.weights, rgb=rgb)),
        )

    @grpc_errors
    def Saliency(self, request, context, *, request_id):
        from interp.saliency import METHODS, SaliencyParams, saliency

        call = self._call(context, request_id)
        model = self.hub.ready(request.model)
        module = model.require_ready()
        if request.method not in METHODS:
            raise BadRequest(f"unknown saliency method {request.method!r}; valid methods: {', '.join(METHODS)}")
        p = request.params
        layer = None
        if request.method == "grad_cam":
            layer = self._layer(model, p.layer) if p.HasField("layer") else model.spec.default_gradcam_layer
        caps = {"samples": (1, self.limits.max_samples), "steps": (1, self.limits.max_samples)}
        self._check_caps(p, caps)
        params = convert.params_from_proto(p, SaliencyParams, layer=layer)
        self._check_caps(p, caps, params)
        clip = p.clip_percentile if p.HasField("clip_percentile") else rendering.DEFAULT_CLIP_PERCENTILE
        colormap = p.colormap if p.HasField("colormap") else rendering.DEFAULT_COLORMAP
        x = self._input(model, request.image)
        target = self._target_index(model, request.target)
        with self.gate.slot(lambda: not call.should_stop()):
            # No separate forward for the prediction: saliency resolves an unset target to the
            # predicted class and returns the probabilities from its own (clean-input) forward.
            result = saliency(
                module,
                x,
                None if target is None else torch.tensor([target], device=x.device),
                method=request.method,
                params=params,
            )
        target = int(result.target[0])
        probs = result.probabilities[0].cpu()
        saliency_map = result.map[0].detach().cpu()
        heat = rendering.heatmap(saliency_map, clip_percentile=clip, colormap=colormap)
        resolved = convert.params_to_proto(result.params, pb.SaliencyParams)
        resolved.clip_percentile, resolved.colormap = clip, colormap
        return pb.SaliencyResponse(
            stamp=self._stamp(model, call),
            input=self._input_message(x),
            method=request.method,
            target=self._prediction(model, target, probs[target]),
            map=convert.tensor(saliency_map),
            attribution=convert.tensor(result.attribution[0]),
            heatmap_png=rendering.encode_png(heat),
            overlay_png=rendering.encode_png(rendering.overlay(x[0].cpu(), heat)),
            resolved=resolved,
        )

    @grpc_errors
    def Attack(self, request, context, *, request_id):
        from interp.adversarial import METHODS, AttackParams, attack

        call = self._call(context, request_id)
        model = self.hub.ready(request.model)
        module = model.require_ready()
        if request.method not in METHODS:
            raise BadRequest(f"unknown attack method {request.method!r}; valid methods: {', '.join(METHODS)}")
        if not request.epsilons:
            raise BadRequest("at least one epsilon is required, each in (0, 1] (pixel units)")
        self._check_cap("number of epsilons", len(request.epsilons), self.limits.max_epsilons)
        caps = {"steps": (1, self.limits.max_steps)}
        self._check_caps(request.params, caps)
        params = convert.params_from_proto(request.params, AttackParams)
        self._check_caps(request.params, caps, params)
        x = self._input(model, request.image)
        target = self._target_index(model, request.target)
        with self.gate.slot(lambda: not call.should_stop()):
            probs = self._probabilities(module, x)[0]
            original = int(probs.argmax())
            outcomes, resolved = [], None
            for epsilon in request.epsilons:
                result = attack(
                    module,
                    x,
                    method=request.method,
                    epsilon=float(epsilon),
                    target=None if target is None else torch.tensor([target], device=x.device),
                    params=params,
                    should_stop=call.should_stop,
                )
                resolved = result.params
                adversarial = result.adversarial[0].detach().cpu()
                outcomes.append(
                    pb.AttackOutcome(
                        epsilon=float(epsilon),
                        adversarial=convert.tensor(adversarial),
                        adversarial_png=rendering.encode_png(rendering.to_uint8_image(adversarial)),
                        perturbation_png=rendering.encode_png(
                            rendering.perturbation_image(adversarial - x[0].cpu(), float(epsilon))
                        ),
                        prediction=self._prediction(
                            model, result.predictions[0], result.probabilities[0, result.predictions[0]]
                        ),
                        success=bool(result.success[0]),
                        linf=float(result.linf[0]),
                        l2=float(result.l2[0]),
                        step_size=float(result.params.step_size or 0.0),
                    )
                )
        echoed = convert.params_to_proto(resolved, pb.AttackParams)
        echoed.ClearField("step_size")  # per epsilon: reported in each outcome
        response = pb.AttackResponse(
            stamp=self._stamp(model, call),
            input=self._input_message(x),
            method=request.method,
            original=self._prediction(model, original, probs[original]),
            targeted=target is not None,
            outcomes=outcomes,
            resolved=echoed,
        )
        if target is not None:
            response.target.CopyFrom(self._prediction(model, target, probs[target]))
        return response

    # -- iterative methods (streamed) -----------------------------------------------------------

    def _stream(
        self,
        call: Call,
        run: Callable[[Callable, Callable], object],
        event_cls,
        finish: Callable[[object], object],
    ) -> Iterator:
        """Run ``run(on_step, should_stop)`` on a worker thread; yield Progress events, then the result.

        The loop checks ``should_stop`` every step, so a cancelled or expired call ends the work
        itself (not just the stream) within one step.
        """
        events: queue.Queue = queue.Queue(maxsize=64)
        outcome: dict[str, object] = {}

        def on_step(step) -> None:
            preview = b""
            if step.preview is not None:
                preview = rendering.encode_png(rendering.image_grid(step.preview.detach().cpu()))
            progress = pb.Progress(
                step=step.step,
                total_steps=step.total_steps,
                objective=float(step.objective),
                elapsed_s=float(step.elapsed_s),
                stage=step.stage,
                preview_png=preview,
            )
            while not call.should_stop():
                try:
                    events.put(progress, timeout=0.1)
                    return
                except queue.Full:
                    continue

        def work() -> None:
            thread = threading.current_thread()
            idle_name, thread.name = thread.name, f"interp-{call.request_id}"  # who is busy, for operators
            try:
                with self.gate.slot(lambda: not call.should_stop()):
                    outcome["result"] = run(on_step, call.should_stop)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the servicer thread
                outcome["error"] = exc
            finally:
                thread.name = idle_name
                events.put(None)

        worker = self._workers.submit(work)
        try:
            while True:
                try:
                    item = events.get(timeout=0.1)
                except queue.Empty:
                    if call.should_stop() and worker.done():
                        break
                    continue
                if item is None:
                    break
                yield event_cls(progress=item)
        finally:
            worker.result()
        if "error" in outcome:
            raise outcome["error"]  # type: ignore[misc]
        if "result" not in outcome:
            return
        yield event_cls(result=finish(outcome["result"]))

    @grpc_errors
    def VisualizeFilter(self, request, context, *, request_id):
        from interp.feature_vis import FeatureVisParams, resolve, visualize_filter

        call = self._call(context, request_id)
        model = self.hub.ready(request.model)
        module = model.require_ready()
        path = self._layer(model, request.layer)
        info = next(i for i in model.layers if i.name == path)
        channels = list(request.channels)
        if not channels:
            raise BadRequest(f"at least one channel is required, in 0..{info.channels - 1}")
        self._check_cap("number of channels", len(channels), self.limits.max_channels)
        for c in channels:
            if not 0 <= c < info.channels:
                raise BadRequest(f"channel {c} out of range for {path}: valid 0..{info.channels - 1}")
        caps = {"steps": (1, self.limits.max_steps), "image_size": (16, self.limits.max_image_side)}
        self._check_caps(request.params, caps)
        params = resolve(
            convert.params_from_proto(request.params, FeatureVisParams),
            in_channels=model.spec.input_shape[0],
            input_size=model.spec.input_shape[1],
        )
        self._check_caps(request.params, caps, params)
        in_channels = model.spec.input_shape[0]

        def run(on_step, should_stop):
            return visualize_filter(
                module,
                path,
                channels,
                in_channels=in_channels,
                input_size=model.spec.input_shape[1],
                params=params,
                on_step=on_step,
                should_stop=should_stop,
            )

        def finish(result) -> pb.VisualizeFilterResult:
            images = result.images.detach().cpu()
            return pb.VisualizeFilterResult(
                stamp=self._stamp(model, call),
                layer=path,
                channels=channels,
                images=convert.tensor(images),
                pngs=[rendering.encode_png(rendering.to_uint8_image(image)) for image in images],
                grid_png=rendering.encode_png(rendering.image_grid(images, labels=[f"{path}:{c}" for c in channels])),
                activations=[float(a) for a in result.activations],
                resolved=convert.params_to_proto(result.params, pb.VisualizeFilterParams),
            )

        yield from self._stream(call, run, pb.VisualizeFilterEvent, finish)

    @grpc_errors
    def DeepDream(self, request, context, *, request_id):
        from interp.deepdream import DeepDreamParams, deepdream, resolve

        call = self._call(context, request_id)
        model = self.hub.ready(request.model)
        module = model.require_ready()
        if not request.layers:
            raise BadRequest(f"at least one layer is required; see DescribeModel for {model.spec.name}'s layers")
        layers: dict[str, float] = {}
        for item in request.layers:
            weight = item.weight if item.HasField("weight") else 1.0
            if not np.isfinite(weight):
                raise BadRequest(f"layer weight must be finite, got {weight}")
            layers[self._layer(model, item.layer)] = weight
        caps = {"iterations": (1, self.limits.max_steps), "octaves": (1, self.limits.max_octaves)}
        self._check_caps(request.params, caps)
        params = resolve(
            convert.params_from_proto(request.params, DeepDreamParams),
            in_channels=model.spec.input_shape[0],
            input_size=model.spec.input_shape[1],
        )
        self._check_caps(request.params, caps, params)
        x = self._input(model, request.image)

        def run(on_step, should_stop):
            return deepdream(module, x, layers, params=params, on_step=on_step, should_stop=should_stop)

        def finish(result) -> pb.DeepDreamResult:
            image = result.image[0].detach().cpu()
            return pb.DeepDreamResult(
                stamp=self._stamp(model, call),
                input=self._input_message(x),
                image=convert.tensor(image),
                png=rendering.encode_png(rendering.to_uint8_image(image)),
                gains=[
                    pb.LayerGain(layer=name, norm_before=result.norms_before[name], norm_after=result.norms_after[name])
                    for name in layers
                ],
                resolved=convert.params_to_proto(result.params, pb.DeepDreamParams),
            )

        yield from self._stream(call, run, pb.DeepDreamEvent, finish)

    def _image_set(
        self, model: LoadedModel, images: Sequence[pb.Image], class_name: str, what: str, set_size: int, seed: int
    ) -> torch.Tensor:
        if images and class_name:
            raise BadRequest(f"{what}: give either images or a class name, not both")
        if class_name:
            return self._class_set(model, class_name, what, set_size, seed)
        if not images:
            raise BadRequest(f"{what} set is empty: give images or (for lenet) a class name")
        self._check_cap(f"{what} set size", len(images), self.limits.max_set_size)
        return torch.cat([self._input(model, image, f"{what} image") for image in images])

    def _class_set(self, model: LoadedModel, class_name: str, what: str, set_size: int, seed: int) -> torch.Tensor:
        from models.datasets import load_dataset

        dataset = model.spec.training_dataset
        if dataset is None:
            raise BadRequest(
                f"{what}: class-name sets need a model trained in this repo (lenet); for {model.spec.name} pass images"
            )
        index = self._target_index(model, pb.Target(label=class_name))
        with self._datasets_lock:
            if dataset not in self._datasets:
                self._datasets[dataset] = load_dataset(dataset, "train", download=False)
        images, labels = self._datasets[dataset]
        candidates = np.flatnonzero(labels == index)
        rng = np.random.default_rng(seed)
        chosen = rng.choice(candidates, size=min(set_size, len(candidates)), replace=False)
        batch = torch.from_numpy(images[np.sort(chosen)].astype(np.float32) / 255.0).unsqueeze(1)
        return batch.to(self.config.device)

    @grpc_errors
    def InterpolateFeatures(self, request, context, *, request_id):
        from interp.interpolation import (
            DEFAULT_ALPHAS,
            InterpolateFeaturesParams,
            attribute_vector,
            features,
            interpolate_features,
            resolve,
        )

        call = self._call(context, request_id)
        model = self.hub.ready(request.model)
        module = model.require_ready()
        names = list(request.layers) or list(model.spec.default_dfi_layers)
        layers = [self._layer(model, name) for name in names]
        alphas = list(request.alphas) or list(DEFAULT_ALPHAS)
        self._check_cap("number of alphas", len(alphas), self.limits.max_alphas)
        if not all(np.isfinite(a) for a in alphas):
            raise BadRequest(f"alphas must be finite numbers, got {alphas}")
        caps = {
            "iterations": (1, self.limits.max_steps),
            "warm_iterations": (1, self.limits.max_steps),
            "set_size": (1, self.limits.max_set_size),
        }
        self._check_caps(request.params, caps)
        params = resolve(
            convert.params_from_proto(request.params, InterpolateFeaturesParams), num_alphas=len(alphas)
        )
        self._check_caps(request.params, caps, params)
        source = self._input(model, request.source, "source")
        mode = request.WhichOneof("direction")
        if mode is None:
            raise BadRequest("give either attribute sets (positive and negative) or a target image")
        if mode == "target":
            target_image = self._input(model, request.target, "target")
        else:
            sets = request.sets
            positive = self._image_set(
                model, sets.positive, sets.positive_class, "positive", params.set_size, params.seed
            )
            negative = self._image_set(
                model, sets.negative, sets.negative_class, "negative", params.set_size, params.seed
            )

        def run(on_step, should_stop):
            if mode == "target":
                direction = features(module, target_image, layers) - features(module, source, layers)
            else:
                direction = attribute_vector(module, positive, negative, layers)
            return interpolate_features(
                module,
                source,
                layers,
                direction=direction,
                alphas=alphas,
                params=params,
                on_step=on_step,
                should_stop=should_stop,
            )

        def finish(results) -> pb.InterpolateFeaturesResult:
            out = []
            for item in results:
                image = item.images[:1].detach()
                probs = self._probabilities(module, image)[0]
                best = int(probs.argmax())
                out.append(
                    pb.AlphaResult(
                        alpha=float(item.alpha),
                        image=convert.tensor(image[0].cpu()),
                        png=rendering.encode_png(rendering.to_uint8_image(image[0].cpu())),
                        feature_error=float(item.feature_error[0]),
                        prediction=self._prediction(model, best, probs[best]),
                    )
                )
            return pb.InterpolateFeaturesResult(
                stamp=self._stamp(model, call),
                input=self._input_message(source),
                layers=layers,
                results=out,
                resolved=convert.params_to_proto(params, pb.InterpolateFeaturesParams),
                alphas=alphas,
            )

        yield from self._stream(call, run, pb.InterpolateFeaturesEvent, finish)
