"""The whole pipeline with the real engine: `denas search` in a search pod, then a real
2-process `denas train` (two training pods under torchrun), on a digits-sized cnn job."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(540)]


def metric_line(text: str, name: str, job: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + "{") and f'denasjob="{job}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def test_real_search_then_two_process_training_succeeds(cluster, operator, job_name):
    spec = {
        "domain": "cnn",
        "image": cluster.engine_image,
        "searchSpace": {"preset": "digits"},
        "score": {"batchSize": 8, "latency": {"warmup": 1, "repeats": 2}},
        "search": {"population": 4, "generations": 2, "topK": 3, "seed": 1},
        "training": {
            "replicas": 2,
            "nprocPerNode": 1,
            "epochs": 1,
            "batchSize": 64,
            "dataset": {"name": "digits", "limit": 256},
            "backoffLimit": 1,
        },
    }
    cluster.apply(cluster.job(job_name, spec))
    searching = cluster.wait(
        "search progress in the status",
        lambda: (cluster.status(job_name).get("search") or {}).get("generation"),
        240,
        every=0.5,
    )
    assert searching >= 1
    st = cluster.wait_phase(job_name, "Succeeded", 480)  # incl. the export after training
    best = st["bestStructures"]
    assert 1 <= len(best) <= 3 and all(b["structure"] and b["hash"] for b in best)
    # the selection stage (on by default when the job trains) ran in the search pods: its winner
    # leads, every entry keeps its train-free rank, and its rung progress reached the status
    assert best[0]["selection"]["status"] == "ok" and best[0]["selection"]["metricName"] == "accuracy"
    assert sorted(b["trainFreeRank"] for b in best) == sorted({b["trainFreeRank"] for b in best})
    assert st["search"]["selection"]["rung"] == st["search"]["selection"]["rungs"] - 1
    assert st["search"]["generation"] == 2 and st["search"]["evaluated"] >= 4
    assert st["training"]["succeeded"] == 2 and st["training"]["restarts"] == 0
    assert st["training"].get("metricName") and 0.0 <= st["training"]["metric"] <= 1.0
    text = operator.metrics()
    assert metric_line(text, "denas_job_search_generation", job_name) == 2
    assert metric_line(text, "denas_job_search_best_score", job_name) == pytest.approx(
        st["search"]["bestScore"]
    )
    assert metric_line(text, "denas_job_training_metric", job_name) == pytest.approx(st["training"]["metric"])
    # the master pod exported after training (denas.export.pod) and the operator mirrored it
    export = next(c for c in st["conditions"] if c["type"] == "ExportFailed")
    assert export["status"] == "False", export["message"]
    ref = st["modelRef"]
    assert {"torchscript", "onnx"} <= set(ref["formats"]) and ref["sizes"]["onnx"] > 0
    assert (
        ref["path"].endswith("/model")
        and ref["storage"] == "emptyDir"
        and "lost with the pod" in ref["warning"]
    )
