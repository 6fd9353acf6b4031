"""Issue 13 throughput: many images per call, and lighter answers, against raw torch in the same run.

What is compared, in one process and one run (variants interleaved round-robin, order rotated
every round, so drift in machine load hits all alike):

1. **LeNet Classify, 256 images per call**: ``InterpClient.classify(list of 256 uint8 arrays,
   model="lenet")`` against an in-process server on 127.0.0.1 (request encoding, gRPC over
   loopback, decoding and preprocessing of each image, one batched forward, top-5 and logits per
   image, response parsing into 256 results) vs **raw**: the same module object on the same
   (256, 1, 28, 28) preprocessed batch under ``torch.inference_mode()``, forward only. Reported:
   images/s of each and service ÷ raw throughput (targets ≥ 5,000 images/s and ≥ 0.25×), then the
   service call split into its stages, each timed alone (decode + preprocess of the 256 images as
   one stack, forward, building the 256 answers, serializing, SDK parsing; the remainder is gRPC
   and thread hand-offs).
2. **LeNet gradient Saliency, one image, PNGs skipped** (``include_pngs=False``): p50 (target
   ≤ 2 ms), and with PNGs for reference, then the PNG-less call split into its stages (also for
   AlexNet).
3. **AlexNet gradient Saliency** (random weights) service ÷ raw with PNGs skipped (target ≤ 1.15)
   and with PNGs; raw is captum ``Saliency`` on the same input with the softmax from the same
   forward (bench_latency's baseline, checked to compute the same map first).
4. **Answer sizes** (bytes of the serialized reply): Classify (default: no input echo; and with
   ``include_input=True``, the former default) and Saliency with and without PNGs.

Usage: ``.venv/bin/python -m benchmarks.bench_throughput [--rounds-classify 30]
[--rounds-lenet 500] [--rounds-alexnet 60] [--threads N] [--only classify]``. About 2 minutes on 2
idle cores; ``--only classify`` runs part 1 alone (about 20 s).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
import torch

from benchmarks import _common
from benchmarks._common import interleaved, load_report, ms, p50, p95, paired_ratio, running_server, table, verdict
from benchmarks.bench_latency import cat_crop, raw_saliency
from client import InterpClient
from client.images import add_image, image_message
from client.results import ClassifyResult
from interp.attribution.saliency import saliency as interp_saliency
from protos import interp_pb2 as pb
from server.handlers.models import fill_classify_answers
from server.imaging import decode_cost, load_input, load_stack, stack_run

BATCH = 256
TARGET_IMAGES_PER_S = 5000.0
TARGET_FRACTION_OF_RAW = 0.25
LENET_P50_TARGET_S = 0.002
ALEXNET_RATIO_TARGET = 1.15


def fashion_images(count: int) -> list[np.ndarray]:
    """``count`` Fashion-MNIST test images (28x28 uint8), or seeded noise when the dataset is absent."""
    try:
        from models.datasets import load_dataset

        images, _ = load_dataset("fashion-mnist", "test", download=False)
        return list(images[:count])
    except Exception:  # noqa: BLE001 - any failure: timing does not depend on the pictures
        return list(np.random.default_rng(0).integers(0, 256, (count, 28, 28), dtype=np.uint8))


def classify_batch(server, client: InterpClient, rounds: int) -> tuple[list[list[object]], list[list[object]]]:
    loaded = server.servicer.hub.get("lenet")
    module = loaded.require_ready()
    images = fashion_images(BATCH)
    results = client.classify(images, model="lenet")
    request = pb.ClassifyRequest(model="lenet", images=[image_message(a) for a in images])
    preprocessing, max_pixels = loaded.spec.preprocessing, server.servicer.limits.max_image_pixels
    x = torch.cat([load_input(image, preprocessing, max_pixels) for image in request.images])
    with torch.inference_mode():
        raw_logits = module(x)
    service_logits = np.stack([r.logits for r in results])
    if not np.allclose(service_logits, raw_logits.numpy(), atol=1e-4):
        raise SystemExit("lenet: raw baseline and service disagree; the benchmark would compare different work")

    def raw() -> None:
        with torch.inference_mode():
            module(x)

    times = interleaved({"service": lambda: client.classify(images, model="lenet"), "raw": raw}, rounds, warmup=3)
    svc, base = times["service"], times["raw"]
    svc_rate, raw_rate = BATCH / p50(svc), BATCH / p50(base)
    fraction = svc_rate / raw_rate
    reply = client._stub.Classify(request)
    data = reply.SerializeToString()
    rows = [
        [
            f"lenet Classify, {BATCH} images per call ({torch.get_num_threads()} threads)",
            f"{svc_rate:,.0f}",
            f"{raw_rate:,.0f}",
            f"{fraction:.3f}",
            f"{1 / paired_ratio(svc, base):.3f}",
            f"≥ {TARGET_IMAGES_PER_S:,.0f}/s: {verdict(svc_rate, TARGET_IMAGES_PER_S, higher_is_better=True)}; "
            f"≥ {TARGET_FRACTION_OF_RAW}×: {verdict(fraction, TARGET_FRACTION_OF_RAW, higher_is_better=True)}",
            f"{ms(p50(svc))} / {ms(p95(svc))}",
            f"{len(data) / BATCH:.0f}",
            len(svc),
        ]
    ]

    # Where the call's time goes: the servicer's stages on the same request, each timed alone.
    with torch.inference_mode():
        logits = module(x)
        values, indices = torch.softmax(logits, dim=1).topk(5, dim=1)
    labels = loaded.spec.labels

    def answers() -> pb.ClassifyResponse:  # what the Classify handler does after the forward
        reply = pb.ClassifyResponse()
        fill_classify_answers([reply.items.add() for _ in range(BATCH)], logits, values, indices, labels)
        return reply

    def forward() -> None:
        with torch.inference_mode():
            torch.softmax(module(x), dim=1).topk(5, dim=1)

    def parse() -> None:  # what InterpClient.call_many does with the reply
        message = pb.ClassifyResponse.FromString(data)
        failed = [item.HasField("error") for item in message.items]
        answered = [item for item, bad in zip(message.items, failed, strict=True) if not bad]
        ClassifyResult.from_items(answered, message.stamp)

    def build() -> bytes:  # what the SDK's build_request does with 256 arrays
        request = pb.ClassifyRequest(model="lenet")
        for image in images:
            add_image(request.images, image)
        return request.SerializeToString()

    def decode() -> torch.Tensor:  # what Ctx.inputs does for 256 raw images of one shape
        if stack_run(request.images, 0, preprocessing, max_pixels) != len(request.images):
            raise SystemExit("lenet: the benchmark's images do not share one stack key")
        decode_cost(request.images[0], preprocessing, max_pixels)
        return load_stack(request.images, preprocessing)[0]

    stages: dict[str, Callable[[], object]] = {
        "SDK: 256 arrays into the request": build,
        "server: decode + preprocess 256 images (stacked)": decode,
        "server: batched forward + softmax + top-5": forward,
        "server: 256 answers (predictions, logits tensors)": answers,
        "serialize the response": reply.SerializeToString,
        "SDK: parse the response into 256 results": parse,
    }
    runs = {"SDK call (whole)": lambda: client.classify(images, model="lenet"), **stages}
    t = {k: p50(v) for k, v in interleaved(runs, max(10, rounds // 2)).items()}
    total = t.pop("SDK call (whole)")
    stage_rows: list[list[object]] = [[k, ms(v)] for k, v in t.items()]
    stage_rows.append(["sum of the stages above", ms(sum(t.values()))])
    stage_rows.append(["SDK call (whole)", ms(total)])
    stage_rows.append(["remainder: gRPC transfer, interceptors, thread hand-offs", ms(total - sum(t.values()))])
    return rows, stage_rows


def saliency_check(client: InterpClient, module: torch.nn.Module, model: str, image: object) -> torch.Tensor:
    first = client.saliency(image, model=model, method="gradient", include_pngs=False)
    x = torch.from_numpy(np.ascontiguousarray(first.input.transpose(2, 0, 1))).unsqueeze(0)
    raw_map, raw_target, _ = raw_saliency(module, x)
    if raw_target != first.target.index or not np.allclose(raw_map[0].numpy(), first.map, rtol=1e-4, atol=1e-6):
        raise SystemExit(f"{model}: raw baseline and service disagree; the benchmark would compare different work")
    return x


def saliency_rows(client: InterpClient, server, model: str, image: object, rounds: int) -> list[list[object]]:
    module = server.servicer.hub.get(model).require_ready()
    x = saliency_check(client, module, model, image)
    runs: dict[str, Callable[[], object]] = {
        "no PNGs": lambda: client.saliency(image, model=model, method="gradient", include_pngs=False),
        "with PNGs": lambda: client.saliency(image, model=model, method="gradient"),
        "raw": lambda: raw_saliency(module, x),
    }
    times = interleaved(runs, rounds, warmup=3)
    raw = times["raw"]
    rows: list[list[object]] = []
    for name in ("no PNGs", "with PNGs"):
        svc = times[name]
        ratio = p50(svc) / p50(raw)
        if model == "lenet":
            goal = f"p50 ≤ {LENET_P50_TARGET_S * 1e3:g} ms" if name == "no PNGs" else "(reference)"
            status = verdict(p50(svc), LENET_P50_TARGET_S) if name == "no PNGs" else "-"
        else:
            goal = f"≤ {ALEXNET_RATIO_TARGET:.2f}" if name == "no PNGs" else "(reported)"
            status = verdict(ratio, ALEXNET_RATIO_TARGET) if name == "no PNGs" else "-"
        rows.append(
            [
                f"{model} gradient Saliency, {name} ({torch.get_num_threads()} threads)",
                ms(p50(svc)),
                ms(p95(svc)),
                ms(p50(raw)),
                f"{ratio:.3f}",
                f"{paired_ratio(svc, raw):.3f}",
                goal,
                status,
                len(svc),
            ]
        )
    return rows


def saliency_stages(server, client: InterpClient, model: str, image: object, rounds: int) -> list[list[object]]:
    """Where a PNG-less saliency call's time goes: the servicer's stages on the same request, each
    timed alone and interleaved with the whole SDK call; the remainder is gRPC (transfer,
    interceptors, thread hand-offs) and computing on a gRPC worker thread rather than the caller's.
    """
    loaded = server.servicer.hub.get(model)
    module = loaded.require_ready()
    request = pb.SaliencyRequest(model=model, image=image_message(image), method="gradient", include_pngs=False)
    response = client._stub.Saliency(request)
    preprocessing, max_pixels = loaded.spec.preprocessing, server.servicer.limits.max_image_pixels
    x = load_input(request.image, preprocessing, max_pixels)
    result = interp_saliency(module, x, None, method="gradient")
    stages: dict[str, Callable[[], object]] = {
        "SDK: image to request": lambda: pb.SaliencyRequest(
            model=model, image=image_message(image), method="gradient", include_pngs=False
        ).SerializeToString(),
        "server: decode + preprocess": lambda: load_input(request.image, preprocessing, max_pixels),
        "server: saliency (interp, captum)": lambda: interp_saliency(module, x, None, method="gradient"),
        **_common.saliency_reply_stages(result, x, response, "server: "),
    }
    call = {"SDK call (whole)": lambda: client.saliency(image, model=model, method="gradient", include_pngs=False)}
    t = {k: p50(v) for k, v in interleaved({**call, **stages}, rounds).items()}
    total = t.pop("SDK call (whole)")
    rows: list[list[object]] = [[k, ms(v)] for k, v in t.items()]
    rows.append(["sum of the stages above", ms(sum(t.values()))])
    rows.append(["SDK call (whole)", ms(total)])
    rows.append(["remainder: gRPC transfer, interceptors, thread hand-offs", ms(total - sum(t.values()))])
    return rows


def size_rows(client: InterpClient, images: dict[str, object]) -> list[list[object]]:
    stub = client._stub
    rows: list[list[object]] = []
    for model, image in images.items():
        message = image_message(image)
        plain = stub.Classify(pb.ClassifyRequest(model=model, image=message)).ByteSize()
        echoed = stub.Classify(pb.ClassifyRequest(model=model, image=message, include_input=True)).ByteSize()
        rows.append([f"{model} Classify", f"{echoed:,} (include_input=true, the former default)", f"{plain:,}"])
        full = stub.Saliency(pb.SaliencyRequest(model=model, image=message, method="gradient")).ByteSize()
        light = stub.Saliency(
            pb.SaliencyRequest(model=model, image=message, method="gradient", include_pngs=False)
        ).ByteSize()
        bare = stub.Saliency(
            pb.SaliencyRequest(model=model, image=message, method="gradient", include_pngs=False, include_input=False)
        ).ByteSize()
        rows.append([f"{model} Saliency gradient", f"{full:,} (default)", f"{light:,} (no PNGs); {bare:,} (no echo)"])
    return rows


def print_classify(batch_rows: list[list[object]], stage_rows: list[list[object]]) -> None:
    print()
    print("### Many images per call: LeNet Classify through the SDK vs raw batched forward")
    print()
    header = [
        "work",
        "service images/s",
        "raw images/s",
        "service ÷ raw",
        "paired",
        "targets",
        "call p50 / p95 ms",
        "answer bytes per image",
        "rounds",
    ]
    print(table(header, batch_rows))
    print()
    print(f"### Where a {BATCH}-image Classify call's time goes (p50 of each stage timed alone, interleaved)")
    print()
    print(table(["stage", "ms"], stage_rows))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds-classify", type=int, default=30)
    parser.add_argument("--rounds-lenet", type=int, default=500)
    parser.add_argument("--rounds-alexnet", type=int, default=60)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument("--only", choices=("classify",), help="run only this part (classify: part 1)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"before: {load_report()}")
    models = ("lenet",) if args.only == "classify" else ("lenet", "alexnet")
    with running_server(models) as (server, target), InterpClient(target, timeout=600) as client:
        client.wait_ready()
        batch_rows, stage_rows = classify_batch(server, client, args.rounds_classify)
        if args.only == "classify":
            print(f"after: {load_report()}")
            print_classify(batch_rows, stage_rows)
            return
        lenet_rows = saliency_rows(client, server, "lenet", fashion_images(1)[0], args.rounds_lenet)
        lenet_stages = saliency_stages(server, client, "lenet", fashion_images(1)[0], max(20, args.rounds_lenet // 3))
        alexnet_rows = saliency_rows(client, server, "alexnet", cat_crop(), args.rounds_alexnet)
        alexnet_stages = saliency_stages(server, client, "alexnet", cat_crop(), max(10, args.rounds_alexnet // 3))
        sizes = size_rows(client, {"lenet": fashion_images(1)[0], "alexnet": cat_crop()})
    print(f"after: {load_report()}")
    print_classify(batch_rows, stage_rows)
    print()
    print("### Gradient Saliency, one image: PNGs skipped (include_pngs=false) and with PNGs, vs raw captum")
    print()
    header = ["work", "p50 ms", "p95 ms", "raw p50 ms", "÷ raw p50", "paired", "target", "status", "rounds"]
    print(table(header, lenet_rows + alexnet_rows))
    for name, rows in (("lenet", lenet_stages), ("alexnet", alexnet_stages)):
        print()
        print(f"### Where a {name} saliency call without PNGs spends its time (p50 of each stage timed alone)")
        print()
        print(table(["stage", "ms"], rows))
    print()
    print("### Answer sizes (bytes of the serialized reply, one image)")
    print()
    print(table(["answer", "before / default", "lighter"], sizes))


if __name__ == "__main__":
    main()
