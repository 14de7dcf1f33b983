"""Export the trained winner as artifacts that run without DeNAS, plus a model card.

Stage after training (DESIGN.md): `denas run` writes `<out>/model/`, the training master pod writes
`<state>/model/` on the job's storage and reports a `modelRef`; `denas export RUN_DIR` re-exports.

- `denas.export.load`: rebuild the trained module from `model.pt` and its example inputs
- `denas.export.formats`: the registry of formats (torchscript, onnx, huggingface), each with its check
- `denas.export.card`: latency measurement and the model card (JSON + Markdown)
- `denas.export.ipex`: the IPEX bf16 TorchScript variant, kept only when it measurably helps
- `denas.export.stage`: the stage itself (`export_run`) and `modelRef`
- `denas.export.status`: the ``ExportFailed`` condition (torch-free: the operator uses it)
- `denas.export.command`: `denas export RUN_DIR`

This package imports nothing heavy: import the submodule you need.
"""
