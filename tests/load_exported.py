"""Load every artifact of an export WITHOUT DeNAS and compare its outputs with the reference.

Run as a script in a fresh process (tests/export_support.py, with PYTHONPATH stripped):
    python load_exported.py MODEL_DIR REFERENCE.npz
REFERENCE.npz holds the inputs (``in_<name>``) and the trained model's outputs (``expected``, and
for a Hugging Face folder ``hidden``: the encoder's last hidden state). Prints one JSON line: max
abs diff per artifact, the artifacts the card lists, and proof that denas was not importable.

Before anything else, denas is made unreachable: the shared venv holds an editable install of it
(a meta-path finder, or a path entry), so stripping PYTHONPATH alone would leave it importable.
Every finder and path entry that can find it is dropped, and the script checks that
``import denas`` now fails, so nothing below can use DeNAS even by accident.
"""

import importlib.util
import sys
from pathlib import Path


def _finds_denas(finder) -> bool:
    try:
        return finder.find_spec("denas", None) is not None
    except Exception:  # a finder that cannot answer cannot find it either
        return False


sys.path[:] = [p for p in sys.path if not (Path(p or ".") / "denas" / "__init__.py").is_file()]
importlib.invalidate_caches()
sys.meta_path[:] = [f for f in sys.meta_path if not _finds_denas(f)]
sys.modules.pop("denas", None)
try:
    import denas  # noqa: F401

    denas_importable = True
except ModuleNotFoundError:
    denas_importable = False
assert importlib.util.find_spec("denas") is None and not denas_importable, "denas is still importable"

import json  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

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

# what the card says was written: every one of them must have been loaded and compared above
listed = sorted(n for n, a in card["artifacts"].items() if a.get("files") and not a.get("error"))
if (card.get("ipex_bf16") or {}).get("kept"):
    listed.append("ipex-bf16")
loaded_denas = sorted(m for m in sys.modules if m == "denas" or m.startswith("denas."))
report = {
    "diffs": diffs,
    "listed": listed,
    "denas_modules": loaded_denas,
    "denas_importable": importlib.util.find_spec("denas") is not None,
}
print(json.dumps(report))
