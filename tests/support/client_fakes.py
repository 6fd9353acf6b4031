"""A scripted interp.v1 servicer for the client tests: a test double of the transport, not of our server.

It runs in a real in-process gRPC server on port 0, so the SDK and CLI are exercised through
real channels, metadata, status codes, deadlines and stream cancellation. Behaviour is chosen by
the request's model name:

- ``"abort:CODE"`` (e.g. ``abort:NOT_FOUND``): the RPC aborts with that status code and a message
  that carries non-ASCII text and a request id;
- ``"slow"`` (streaming RPCs): progress events every 10 ms until the client cancels (max 20 s);
- ``"sleep"`` (unary RPCs): sleeps 5 s (deadline tests);
- ``"noresult"`` (streaming RPCs): two progress events, then the stream ends without a result;
- anything else: canned, deterministic responses.
"""

from __future__ import annotations

import threading
import time
from concurrent import futures

import grpc
import numpy as np

from protos import interp_pb2 as pb
from protos import interp_pb2_grpc as pb_grpc
from protos.codec import to_tensor
from protos.methods import METHODS, Method

# A valid 1x1 PNG (the client never decodes; any bytes would do, real ones are friendlier).
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010800000000"
    "3a7e9b550000000a49444154789c63600000000200015e2c8a3a0000000049454e44ae426082"
)
ABORT_MESSAGE = "no luck for {code} — ünïcödé intact (request id req-{code})"


def stamp(model: str) -> pb.ModelStamp:
    return pb.ModelStamp(model=model, pretrained=False, weights_sha256="ab" * 32, request_id="rid-1", elapsed_ms=1.5)


def preprocessed() -> pb.PreprocessedInput:
    return pb.PreprocessedInput(tensor=to_tensor(np.full((3, 4, 4), 0.5, np.float32)), png=PNG)


class FakeInterp(pb_grpc.InterpServicer):
    """Records what it received; see the module docstring for the scripted behaviours."""

    def __init__(self) -> None:
        self.metadata: list[dict[str, str]] = []
        self.requests: list[object] = []
        self.stream_started = threading.Event()
        self.stream_cancelled = threading.Event()  # add_callback fired while the loop was running
        self.loop_stopped = threading.Event()  # the server's loop ended (is_active() False or generator closed)
        self.stream_completed_ok = threading.Event()

    # -- helpers -------------------------------------------------------------------------------

    def _record(self, request: object, context: grpc.ServicerContext) -> None:
        self.metadata.append({k: v for k, v in context.invocation_metadata()})
        self.requests.append(request)

    def _maybe_abort(self, model: str, context: grpc.ServicerContext) -> None:
        if model.startswith("abort:"):
            name = model.split(":", 1)[1]
            context.abort(grpc.StatusCode[name], ABORT_MESSAGE.format(code=name))
        if model == "sleep":
            time.sleep(5)

    def _stream(self, request, context, make_event, make_result):
        self._record(request, context)
        self._maybe_abort(request.model, context)
        if request.model == "slow":
            context.add_callback(self.stream_cancelled.set)
            self.stream_started.set()
            deadline = time.monotonic() + 20
            step = 0
            try:
                while context.is_active() and time.monotonic() < deadline:
                    step += 1
                    yield make_event(progress=pb.Progress(step=step, total_steps=10_000, objective=float(step)))
                    time.sleep(0.01)
            finally:
                # Reached either by the is_active() check or, when gRPC stops pulling from a
                # cancelled stream, by the generator being closed: both mean the work stopped.
                self.loop_stopped.set()
            return
        for step in (1, 2):
            yield make_event(
                progress=pb.Progress(
                    step=step,
                    total_steps=2,
                    objective=0.5 * step,
                    elapsed_s=0.01 * step,
                    stage="octave 1/1",
                    preview_png=PNG if step == 2 else b"",
                )
            )
        if request.model == "noresult":
            return
        yield make_event(result=make_result(request))
        self.stream_completed_ok.set()

    # -- models and server ---------------------------------------------------------------------

    def ListModels(self, request, context):
        self._record(request, context)
        return pb.ListModelsResponse(
            models=[
                pb.ModelInfo(
                    name="vgg16",
                    task="imagenet-classification",
                    input_shape=[3, 224, 224],
                    num_classes=1000,
                    pretrained=False,
                    weights=pb.WeightsInfo(source="random", sha256="0123456789abcdef" * 4),
                    status=pb.ModelInfo.READY,
                    dataset="ImageNet-1k",
                ),
                pb.ModelInfo(
                    name="lenet",
                    task="fashion-mnist-classification",
                    input_shape=[1, 28, 28],
                    num_classes=10,
                    status=pb.ModelInfo.UNAVAILABLE,
                    reason="no weights: run interp-train\nor give --weights lenet=FILE",
                ),
            ]
        )

    def DescribeModel(self, request, context):
        self._record(request, context)
        self._maybe_abort(request.model, context)
        return pb.DescribeModelResponse(
            model=pb.ModelInfo(name=request.model, input_shape=[3, 224, 224], num_classes=2, status=pb.ModelInfo.READY),
            layers=[
                pb.Layer(
                    name="features.10",
                    aliases=["conv3_1"],
                    type="Conv2d",
                    output_shape=[256, 56, 56],
                    channels=256,
                    receptive_field=pb.ReceptiveField(size=24, jump=4, start=1.5),
                    parameters=295168,
                    has_kernels=True,
                ),
                pb.Layer(name="classifier.6", type="Linear", output_shape=[1000], channels=1000, parameters=4097000),
            ],
            labels=["cat", "dog"],
            preprocessing=pb.Preprocessing(channels=3, resize_shorter=256, crop=224, mean=[0.485], std=[0.229]),
            default_gradcam_layer="features.28",
        )

    def GetServerInfo(self, request, context):
        self._record(request, context)
        return pb.ServerInfo(
            version="0.1.0",
            api_version="interp.v1",
            device="cpu",
            limits=pb.Limits(max_message_bytes=1 << 26, max_steps=2048, default_deadline_s=300.0),
            libraries={"torch": "2.14.1", "grpcio": "1.85.1"},
            models=["vgg16", "lenet"],
            worker_threads=4,
            implemented_rpcs=["ListModels", "Classify"],
        )

    def Classify(self, request, context):
        self._record(request, context)
        self._maybe_abort(request.model, context)
        k = request.top_k if request.HasField("top_k") else 5
        predictions = [pb.Prediction(index=i, label=f"class {i}", probability=1.0 / (i + 2)) for i in range(k)]
        return pb.ClassifyResponse(
            stamp=stamp(request.model),
            predictions=predictions,
            input=preprocessed(),
            logits=to_tensor(np.arange(10, dtype=np.float32)),
        )

    # -- single-pass ---------------------------------------------------------------------------

    def Activations(self, request, context):
        self._record(request, context)
        self._maybe_abort(request.model, context)
        include = request.include_tensors if request.HasField("include_tensors") else True
        layers = []
        for name in request.layers:
            act = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3)
            layers.append(
                pb.LayerActivation(
                    layer=f"features.{len(name)}",
                    requested=name,
                    activation=to_tensor(act) if include else pb.Tensor(),
                    channel_mean=to_tensor(act.mean(axis=(1, 2))),
                    channel_max=to_tensor(act.max(axis=(1, 2))),
                    top_channels=[1, 0],
                    grid_png=PNG,
                )
            )
        return pb.ActivationsResponse(
            stamp=stamp(request.model), input=preprocessed(), layers=layers, resolved_top_k=request.top_k
        )

    def Kernels(self, request, context):
        self._record(request, context)
        self._maybe_abort(request.model, context)
        return pb.KernelsResponse(
            stamp=stamp(request.model),
            layer=request.layer,
            weights=to_tensor(np.zeros((4, 3, 3, 3), np.float32)),
            rgb=True,
            grid_png=PNG,
        )

    def Saliency(self, request, context):
        self._record(request, context)
        self._maybe_abort(request.model, context)
        resolved = pb.SaliencyParams()
        resolved.CopyFrom(request.params)
        if not resolved.HasField("seed"):
            resolved.seed = 0
        resolved.samples = resolved.samples or 50
        target_index = request.target.index if request.target.WhichOneof("kind") == "index" else 7
        return pb.SaliencyResponse(
            stamp=stamp(request.model),
            input=preprocessed(),
            method=request.method,
            target=pb.Prediction(index=target_index, label=request.target.label or "seven", probability=0.25),
            map=to_tensor(np.eye(4, dtype=np.float32)),
            attribution=to_tensor(np.ones((3, 4, 4), np.float32)),
            heatmap_png=PNG,
            overlay_png=PNG,
            resolved=resolved,
        )

    def Attack(self, request, context):
        self._record(request, context)
        self._maybe_abort(request.model, context)
        outcomes = [
            pb.AttackOutcome(
                epsilon=eps,
                adversarial=to_tensor(np.zeros((3, 4, 4), np.float32)),
                adversarial_png=PNG,
                perturbation_png=PNG,
                prediction=pb.Prediction(index=3, label="three", probability=0.9),
                success=eps > 0.05,
                linf=eps,
                l2=2 * eps,
                step_size=eps / 10,
            )
            for eps in request.epsilons
        ]
        return pb.AttackResponse(
            stamp=stamp(request.model),
            input=preprocessed(),
            method=request.method,
            original=pb.Prediction(index=1, label="one", probability=0.8),
            targeted=request.HasField("target"),
            outcomes=outcomes,
            resolved=pb.AttackParams(steps=10, seed=123456789012),
        )

    # -- streaming -----------------------------------------------------------------------------

    def VisualizeFilter(self, request, context):
        def result(req: pb.VisualizeFilterRequest) -> pb.VisualizeFilterResult:
            n = len(req.channels)
            return pb.VisualizeFilterResult(
                stamp=stamp(req.model),
                layer=req.layer,
                channels=req.channels,
                images=to_tensor(np.zeros((n, 3, 8, 8), np.float32)),
                pngs=[PNG] * n,
                grid_png=PNG,
                activations=[float(c) for c in req.channels],
                resolved=pb.VisualizeFilterParams(steps=req.params.steps or 512, seed=0),
            )

        yield from self._stream(request, context, pb.VisualizeFilterEvent, result)

    def DeepDream(self, request, context):
        def result(req: pb.DeepDreamRequest) -> pb.DeepDreamResult:
            return pb.DeepDreamResult(
                stamp=stamp(req.model),
                input=preprocessed(),
                image=to_tensor(np.zeros((3, 4, 4), np.float32)),
                png=PNG,
                gains=[pb.LayerGain(layer=lw.layer, norm_before=1.0, norm_after=3.0) for lw in req.layers],
                resolved=pb.DeepDreamParams(octaves=4, iterations=10),
            )

        yield from self._stream(request, context, pb.DeepDreamEvent, result)

    def InterpolateFeatures(self, request, context):
        def result(req: pb.InterpolateFeaturesRequest) -> pb.InterpolateFeaturesResult:
            alphas = list(req.alphas) or [0.0, 0.5, 1.0]
            return pb.InterpolateFeaturesResult(
                stamp=stamp(req.model),
                input=preprocessed(),
                layers=list(req.layers) or ["relu1"],
                results=[
                    pb.AlphaResult(
                        alpha=a,
                        image=to_tensor(np.zeros((1, 4, 4), np.float32)),
                        png=PNG,
                        feature_error=0.01,
                        prediction=pb.Prediction(index=9, label="ankle boot", probability=a / 2),
                    )
                    for a in alphas
                ],
                alphas=alphas,
                resolved=pb.InterpolateFeaturesParams(iterations=200),
            )

        yield from self._stream(request, context, pb.InterpolateFeaturesEvent, result)


def _generic(method: Method):
    """A handler for an RPC the fake does not script: its empty reply, stamped (streamed: after two
    progress events), so that every command of the method table runs against the fake."""

    def answer(request: object) -> object:
        reply = method.reply()
        if "stamp" in method.reply.DESCRIPTOR.fields_by_name:
            reply.stamp.CopyFrom(stamp(getattr(request, "model", "")))
        return reply

    if method.event is not None:
        event = method.event

        def streamed(self, request, context):
            yield from self._stream(request, context, event, answer)

        return streamed

    def unary(self, request, context):
        self._record(request, context)
        self._maybe_abort(getattr(request, "model", ""), context)
        return answer(request)

    return unary


for _method in METHODS:
    if _method.rpc not in FakeInterp.__dict__:
        setattr(FakeInterp, _method.rpc, _generic(_method))


def start_fake(
    servicer: FakeInterp | None = None, credentials: grpc.ServerCredentials | None = None
) -> tuple[grpc.Server, int, FakeInterp]:
    """Start the fake on 127.0.0.1:0; returns (server, port, servicer)."""
    servicer = servicer or FakeInterp()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    pb_grpc.add_InterpServicer_to_server(servicer, server)
    if credentials is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    return server, port, servicer
