"""The method table agrees with the contract, the interp dataclasses, the servicer, the SDK and the CLI."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from protos import interp_pb2 as pb
from protos.interp_docs import FIELD_DOCS
from protos.methods import METHODS, by_rpc, check_table

WITH_PARAMS = [m for m in METHODS if m.params is not None]


def test_table_matches_the_service_descriptor() -> None:
    assert check_table() == []
    service = pb.DESCRIPTOR.services_by_name["Interp"]
    assert {m.rpc for m in METHODS} == {m.name for m in service.methods}


@pytest.mark.parametrize("method", WITH_PARAMS, ids=[m.rpc for m in WITH_PARAMS])
def test_interp_params_dataclass_has_exactly_the_proto_params_fields(method) -> None:
    from server.handlers import HANDLERS

    dataclass = HANDLERS[method.rpc].params
    assert dataclass is not None, f"{method.rpc} has a Params message but its handler declares no dataclass"
    proto_fields = {f.name for f in method.params_message.DESCRIPTOR.fields}
    dataclass_fields = {f.name for f in dataclasses.fields(dataclass)}
    assert proto_fields == dataclass_fields, (
        f"{method.rpc}: only in proto {sorted(proto_fields - dataclass_fields)}, "
        f"only in {dataclass.__name__} {sorted(dataclass_fields - proto_fields)}"
    )


def test_every_rpc_has_one_handler_and_the_servicer_serves_it() -> None:
    from server.handlers import HANDLERS
    from server.servicer import InterpServicer

    assert set(HANDLERS) == {m.rpc for m in METHODS}
    for method in METHODS:
        assert callable(getattr(InterpServicer, method.rpc)), method.rpc
        assert inspect.isgeneratorfunction(getattr(InterpServicer, method.rpc).__wrapped__) == (
            method.streamed or method.live
        )


def test_params_from_proto_refuses_a_field_the_dataclass_lacks() -> None:
    from server.errors import BadRequest
    from server.request_checks import params_from_proto

    @dataclasses.dataclass(frozen=True)
    class Older:
        samples: int = 50

    with pytest.raises(BadRequest) as info:
        params_from_proto(pb.SaliencyParams(samples=3, seed=1), Older)
    assert info.value.field == "params.seed"
    assert params_from_proto(pb.SaliencyParams(samples=3), Older) == Older(samples=3)


def test_sdk_has_a_typed_method_for_every_rpc_and_an_iterator_for_every_stream() -> None:
    from client import InterpClient
    from client.results import RESULTS

    for method in METHODS:
        assert callable(getattr(InterpClient, method.sdk_name, None)), f"InterpClient.{method.sdk_name} missing"
        if method.streamed:
            assert callable(getattr(InterpClient, f"iter_{method.sdk_name}", None)), method.rpc
        if method.rpc != "ListModels":  # a list of ModelInfo, not one result
            assert method.rpc in RESULTS, f"no result class registered for {method.rpc}"
        signature = inspect.signature(getattr(InterpClient, method.sdk_name))
        if method.params is not None:  # the Params fields travel as **params
            assert any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()), method.rpc


def test_cli_has_a_subcommand_per_method_with_every_params_field_as_an_option() -> None:
    from client.cli import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # noqa: SLF001 - argparse has no public accessor
    for method in METHODS:
        if not method.command:
            continue
        assert method.command in commands, method.rpc
        sub = commands[method.command]
        dests = {action.dest for action in sub._actions}  # noqa: SLF001
        if method.params_message is not None:
            for field in method.params_message.DESCRIPTOR.fields:
                assert f"p_{field.name}" in dests, f"interp {method.command}: no option for {field.name}"
                assert FIELD_DOCS.get(f"{method.params_message.DESCRIPTOR.full_name}.{field.name}"), (
                    f"{method.params_message.DESCRIPTOR.name}.{field.name} has no comment in interp.proto (CLI help)"
                )


def test_choices_in_the_table_are_the_methods_interp_implements() -> None:
    from interp.attacks.linf import METHODS as ATTACKS
    from interp.attribution.saliency import METHODS as SALIENCY

    assert tuple(by_rpc("Saliency").choices["method"]) == tuple(SALIENCY)
    assert tuple(by_rpc("Attack").choices["method"]) == tuple(ATTACKS)


def test_build_request_fills_fields_by_type() -> None:
    import numpy as np

    from client.sdk import build_request

    request = build_request(
        by_rpc("VisualizeFilter"), {"model": "lenet", "layer": "conv2", "channels": "0,1, 2"}, {"steps": 4}, "t"
    )
    assert list(request.channels) == [0, 1, 2] and request.params.steps == 4
    request = build_request(
        by_rpc("Attack"), {"model": "m", "image": np.zeros((4, 4), np.uint8), "epsilons": 0.1, "target": "cat"}, {}, "t"
    )
    assert list(request.epsilons) == [0.1] and request.target.label == "cat" and request.image.HasField("pixels")
    with pytest.raises(TypeError, match="valid parameters"):
        build_request(by_rpc("Saliency"), {"model": "m"}, {"sample": 3}, "saliency")
    with pytest.raises(TypeError, match="no field"):
        build_request(by_rpc("Classify"), {"modle": "m"}, {}, "classify")


def test_results_and_events_have_a_short_repr() -> None:
    import numpy as np

    from client.results import ProgressEvent, SaliencyResult

    event = ProgressEvent(
        step=3, total_steps=10, objective=1.5, elapsed_s=0.1, stage="", preview_png=b"\x89PNG" + b"x" * 5000
    )
    assert len(repr(event)) < 200 and "5,004 bytes" in repr(event)
    result = SaliencyResult(
        model="lenet",
        pretrained=True,
        weights_sha256="a" * 64,
        request_id="r",
        elapsed_ms=1.0,
        method="gradient",
        target=None,
        map=np.zeros((224, 224), np.float32),
        attribution=None,
        heatmap_png=b"x" * 100_000,
        overlay_png=b"x" * 100_000,
        input=np.zeros((224, 224, 3), np.float32),
        input_png=b"x" * 100_000,
        params={},
    )
    text = repr(result)
    assert len(text) < 600 and "shape=(224, 224, 3)" in text and "100,000 bytes" in text


def test_the_tables_applies_agree_with_what_interp_reads() -> None:
    """The server reads only the table; the interp modules that keep their own lists for their own
    checks must not drift from it (saliency keeps none: the table is its one source)."""
    from interp.attacks.minimal_params import applies as minimal_applies
    from interp.embedding import TSNE_PARAMS
    from protos.methods import SALIENCY_RENDERING

    saliency = by_rpc("Saliency").applies
    assert all(set(SALIENCY_RENDERING) <= set(names) for names in saliency.values())
    for name, names in by_rpc("MinimalAttack").applies.items():
        assert set(names) == set(minimal_applies(name)), name
    for rpc in ("Embedding", "PlaceImages"):
        assert by_rpc(rpc).applies == {"tsne": TSNE_PARAMS, "pca": ()}


def test_the_adding_an_rpc_recipe_names_what_a_contributor_touches() -> None:
    """The recipe in protos/methods.py names files that exist, and says where every RPC's code is:
    a handler registered from ``server/handlers/<domain>.py`` (listed with its RPCs in the package's
    docstring) and a typed SDK method. A recipe naming a moved file, or an RPC served from elsewhere,
    fails here."""
    import re
    from pathlib import Path

    import protos.methods
    import server.handlers
    from client import InterpClient
    from server.handlers import HANDLERS

    root = Path(protos.methods.__file__).resolve().parents[1]
    doc = protos.methods.__doc__ or ""
    recipe = doc[doc.index("Adding an RPC") :]
    named = set(re.findall(r"``([\w.<>/-]*/[\w.<>/-]*)``", doc))
    assert {"protos/interp.proto", "server/handlers/<domain>.py", "client/sdk.py", "client/results/"} <= named
    for path in sorted(named):
        found = list(root.glob(path.replace("<domain>", "*"))) if "<domain>" in path else [root / path]
        assert found and all(p.exists() for p in found), f"the recipe names {path}, which does not exist"
    assert "server/handlers/<domain>.py" in recipe and "client/sdk.py" in recipe
    listing = {
        line.split("`")[1].lstrip("."): line.split(":", 2)[2]
        for line in (server.handlers.__doc__ or "").splitlines()
        if line.startswith("- :mod:")
    }
    for method in METHODS:
        module = HANDLERS[method.rpc].fn.__module__
        domain = module.removeprefix("server.handlers.")
        assert module.startswith("server.handlers.") and domain != "base", (method.rpc, module)
        assert (root / "server" / "handlers" / f"{domain}.py").exists(), module
        assert method.rpc in re.findall(r"\w+", listing.get(domain, "")), f"{method.rpc} not listed under {domain}"
        assert callable(getattr(InterpClient, method.sdk_name, None)), method.sdk_name
