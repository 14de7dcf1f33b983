"""Load every artifact of an export WITHOUT DeNAS and compare its outputs with the reference.

Run as a script in a fresh process by tests/test_export_formats.py:
    python load_exported.py MODEL_DIR REFERENCE.npz
REFERENCE.npz holds the inputs (``in_<name>``) and the trained model's outputs (``expected``, and
for bert ``hidden``: the encoder's last hidden state). Prints one JSON line: max abs diff per artifact.
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch

folder, reference = Path(sys.argv[1]), np.load(sys.argv[2])
card = json.loads((folder / "card.json").read_text())
names = card["inputs"]
inputs = [torch.from_numpy(reference[f"in_{n}"]) for n in names]
expected = torch.from_numpy(reference["expected"])
diffs = {}

if "torchscript" in card["artifacts"]:
    ts = torch.jit.load(str(folder / "model.torchscript.pt"))
    with torch.no_grad():
        diffs["torchscript"] = float((ts(*inputs) - expected).abs().max())

if "onnx" in card["artifacts"]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == names
    assert session.get_inputs()[0].shape[0] == "batch"  # the dynamic batch axis
    (got,) = session.run(None, {n: t.numpy() for n, t in zip(names, inputs)})
    diffs["onnx"] = float(np.abs(got - expected.numpy()).max())

if (folder / "huggingface").is_dir():
    from transformers import (
        AutoConfig,
        AutoModel,
        AutoModelForQuestionAnswering,
        AutoModelForSequenceClassification,
    )

    kwargs = dict(zip(names, inputs))
    with torch.no_grad():
        hidden = AutoModel.from_pretrained(folder / "huggingface").eval()(**kwargs).last_hidden_state
        diffs["huggingface_automodel"] = float((hidden - torch.from_numpy(reference["hidden"])).abs().max())
        arch = AutoConfig.from_pretrained(folder / "huggingface").architectures[0]
        if arch == "BertForQuestionAnswering":
            out = AutoModelForQuestionAnswering.from_pretrained(folder / "huggingface").eval()(**kwargs)
            got = torch.stack([out.start_logits, out.end_logits], dim=-1)
        else:
            got = (
                AutoModelForSequenceClassification.from_pretrained(folder / "huggingface")
                .eval()(**kwargs)
                .logits
            )
        diffs["huggingface"] = float((got - expected).abs().max())

if (folder / "model.ipex-bf16.torchscript.pt").is_file():
    import intel_extension_for_pytorch  # noqa: F401  (registers the IPEX ops the graph uses)

    variant = torch.jit.load(str(folder / "model.ipex-bf16.torchscript.pt"))
    with torch.no_grad():
        diffs["ipex-bf16"] = float((variant(*inputs).float() - expected).abs().max())

loaded_denas = sorted(m for m in sys.modules if m == "denas" or m.startswith("denas."))
print(json.dumps({"diffs": diffs, "denas_modules": loaded_denas}))
