"""The export formats, one registry entry each: write the artifact, then check it against PyTorch.

An exporter gets the rebuilt `Trained` model, the output directory and the reference samples
(positional inputs of a batch size the trace never saw, and the eager model's outputs on them), and
returns what it wrote and how its outputs compared. A check that fails is returned, not raised:
the stage reports it (card, status) next to the artifact instead of hiding it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from denas.export.load import Trained

ONNX_OPSET = 17
# fp32 tolerance of the exported graphs against eager PyTorch (issue #18)
TOLERANCE = 1e-4

Exporter = Callable[[Trained, Path, tuple[torch.Tensor, ...], torch.Tensor], dict[str, Any]]
FORMATS: dict[str, Exporter] = {}


class ExportError(RuntimeError):
    """An artifact could not be written (the message says which and why)."""


def register(name: str) -> Callable[[Exporter], Exporter]:
    def add(fn: Exporter) -> Exporter:
        FORMATS[name] = fn
        return fn

    return add


def max_abs_diff(a: Any, b: torch.Tensor) -> float:
    return float((torch.as_tensor(a).float() - b.float()).abs().max())


def check(diff: float, tolerance: float | None = None) -> dict[str, Any]:
    tolerance = TOLERANCE if tolerance is None else tolerance
    return {"max_abs_diff": diff, "tolerance": tolerance, "ok": bool(diff <= tolerance)}


def _size(paths: list[Path]) -> int:
    return sum(
        p.stat().st_size if p.is_file() else sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
        for p in paths
    )


def trace(trained: Trained) -> torch.jit.ScriptModule:
    """TorchScript by tracing: every domain's forward is shape-static control flow, and ``script``
    cannot compile transformers' BERT. Traced at batch 2 and checked at another batch size, which
    proves the batch dimension stayed symbolic."""
    example = trained.sample_inputs(batch_size=2)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(trained.wrapped(), example, check_trace=False)
    return torch.jit.freeze(traced.eval())  # folds weights and BN into the graph


@register("torchscript")
def export_torchscript(
    trained: Trained, out: Path, inputs: tuple[torch.Tensor, ...], expected: torch.Tensor
) -> dict[str, Any]:
    path = out / "model.torchscript.pt"
    traced = trace(trained)
    traced.save(str(path))
    loaded = torch.jit.load(str(path))
    with torch.no_grad():
        got = loaded(*inputs)
    return {
        "files": [path.name],
        "bytes": _size([path]),
        "inputs": list(trained.input_names),
        "output": trained.output_name,
        "check": check(max_abs_diff(got, expected)),
    }


def onnx_session(path: Path) -> Any:
    """An onnxruntime CPU session with torch's thread count and without spin-waiting: spinning
    threads keep burning CPU after each run and would slow whatever runs next (eager PyTorch in
    the card's interleaved latency, or other pods on the node)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@register("onnx")
def export_onnx(
    trained: Trained, out: Path, inputs: tuple[torch.Tensor, ...], expected: torch.Tensor
) -> dict[str, Any]:
    path = out / "model.onnx"
    names = list(trained.input_names)
    axes = {name: {0: "batch"} for name in names}
    axes[trained.output_name] = {0: "batch"}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # the TorchScript-based exporter: dynamic_axes gives the symbolic batch dimension directly
        torch.onnx.export(
            trained.wrapped(),
            trained.sample_inputs(batch_size=2),
            str(path),
            input_names=names,
            output_names=[trained.output_name],
            dynamic_axes=axes,
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    session = onnx_session(path)
    (got,) = session.run(None, {n: t.numpy() for n, t in zip(names, inputs)})
    return {
        "files": [path.name],
        "bytes": _size([path]),
        "opset": ONNX_OPSET,
        "inputs": names,
        "output": trained.output_name,
        "dynamic_axes": {"batch": 0},
        "check": check(max_abs_diff(got, expected)),
    }


@register("huggingface")
def export_huggingface(
    trained: Trained, out: Path, inputs: tuple[torch.Tensor, ...], expected: torch.Tensor
) -> dict[str, Any]:
    """A ``save_pretrained`` folder (config.json + model.safetensors). The huggingface space's
    model is a transformers model already (`denas.export.hf_native`; sequence classification
    only, skipped for a QA run). The bert space builds on transformers' own ``BertModel``, so its
    weights map 1:1 onto ``BertForSequenceClassification`` (or ``BertForQuestionAnswering`` for a
    QA run): ``AutoModel`` loads the encoder and the ``AutoModelFor*`` class loads the head too."""
    if trained.domain == "huggingface":  # the space's model is a transformers model already
        from denas.export.hf_native import export_native

        return export_native(trained, out / "huggingface", inputs, expected)
    if trained.domain != "bert":
        return {
            "skipped": f"only the bert and huggingface domains are built on transformers (this is {trained.domain})"
        }
    from transformers import AutoModel, BertForQuestionAnswering, BertForSequenceClassification

    folder = out / "huggingface"
    config = trained.space.bert_config(trained.structure)
    state = trained.model.state_dict()
    if trained.task == "qa":
        config.architectures = ["BertForQuestionAnswering"]
        config.num_labels = 2
        hf = BertForQuestionAnswering(config)
        mapped = {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.bert.")}
        mapped.update(
            {k.replace("span.", "qa_outputs.", 1): v for k, v in state.items() if k.startswith("span.")}
        )
    else:
        config.architectures = ["BertForSequenceClassification"]
        hf = BertForSequenceClassification(config)
        mapped = state
    missing, unexpected = hf.load_state_dict(mapped, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise ExportError(
            f"huggingface: weights do not map onto {type(hf).__name__}: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    hf.save_pretrained(str(folder), safe_serialization=True)
    # Check what a user gets: the encoder through AutoModel, the full model through its own class.
    kwargs = dict(zip(trained.input_names, inputs))
    with torch.no_grad():
        encoder = AutoModel.from_pretrained(str(folder)).eval()
        hidden = encoder(**kwargs).last_hidden_state
        head = type(hf).from_pretrained(str(folder)).eval()(**kwargs)
        if trained.task == "qa":
            got = torch.stack([head.start_logits, head.end_logits], dim=-1)
            reference = trained.model.encoder.forward_features(kwargs)
        else:
            got, reference = head.logits, trained.model.forward_features(kwargs)
    diff = max(max_abs_diff(got, expected), max_abs_diff(hidden, reference))
    return {
        "files": [f"huggingface/{p.name}" for p in sorted(folder.iterdir())],
        "bytes": _size([folder]),
        "class": type(hf).__name__,
        "inputs": list(trained.input_names),
        "check": check(diff),
    }
