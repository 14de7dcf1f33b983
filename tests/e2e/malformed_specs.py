"""Malformed DeNASJob specs, each with the field its error must name (shared by the e2e test)."""

from __future__ import annotations

from typing import Any

OK: dict[str, Any] = {"domain": "cnn", "search": {"population": 4, "generations": 2}}


def _with(**sections: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"domain": "cnn", "search": {"population": 4, "generations": 2}}
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(spec.get(key), dict):
            spec[key] = {**spec[key], **value}
        else:
            spec[key] = value
    return spec


# (case id, spec, the field path the error must name)
MALFORMED: list[tuple[str, dict[str, Any], str]] = [
    ("no-domain", {"search": {"population": 4}}, "spec.domain"),
    # any well-formed name may be a plug-in space (the engine checks it exists, in the pods):
    # the schema rejects only what cannot be a space's name
    ("domain-not-a-name", _with(domain="ResNet 50!"), "spec.domain"),
    ("domain-not-string", _with(domain=5), "spec.domain"),
    ("population-1", _with(search={"population": 1}), "spec.search.population"),
    ("population-string", _with(search={"population": "many"}), "spec.search.population"),
    ("generations-0", _with(search={"generations": 0}), "spec.search.generations"),
    ("strategy-grid", _with(search={"strategy": "grid"}), "spec.search.strategy"),
    ("replicas-0", _with(search={"replicas": 0}), "spec.search.replicas"),
    ("replicas-65", _with(search={"replicas": 65}), "spec.search.replicas"),
    ("topk-51", _with(search={"topK": 51}), "spec.search.topK"),
    ("mutation-prob-1.5", _with(search={"mutationProb": 1.5}), "spec.search.mutationProb"),
    ("seed-negative", _with(search={"seed": -1}), "spec.search.seed"),
    ("nsga2-population-3", _with(search={"strategy": "nsga2", "population": 3}), "spec.search.population"),
    ("typo-section", {**_with(), "serach": {"population": 4}}, "spec.serach"),
    ("max-params-0", _with(constraints={"maxParams": 0}), "spec.constraints.maxParams"),
    ("max-latency-0", _with(constraints={"maxLatencyMs": 0}), "spec.constraints.maxLatencyMs"),
    ("max-flops-string", _with(constraints={"maxFlops": "big"}), "spec.constraints.maxFlops"),
    ("pinned-negative", _with(hardware={"pinnedCpus": -1}), "spec.hardware.pinnedCpus"),
    ("ipex-maybe", _with(hardware={"ipex": "maybe"}), "spec.hardware.ipex"),
    ("node-selector-int", _with(hardware={"nodeSelector": {"zone": 1}}), "spec.hardware.nodeSelector"),
    ("tolerations-string", _with(hardware={"tolerations": "all"}), "spec.hardware.tolerations"),
    ("train-replicas-negative", _with(training={"replicas": -1}), "spec.training.replicas"),
    ("nproc-0", _with(training={"nprocPerNode": 0}), "spec.training.nprocPerNode"),
    ("epochs-0", _with(training={"epochs": 0}), "spec.training.epochs"),
    ("learning-rate-0", _with(training={"learningRate": 0}), "spec.training.learningRate"),
    ("dataset-imagenet", _with(training={"dataset": {"name": "imagenet"}}), "spec.training.dataset.name"),
    ("dataset-no-name", _with(training={"dataset": {"path": "/data"}}), "spec.training.dataset.name"),
    (
        "dataset-wrong-domain",
        _with(domain="bert", training={"dataset": {"name": "digits"}}),
        "spec.training.dataset.name",
    ),
    ("backend-slurm", _with(training={"backend": "slurm"}), "spec.training.backend"),
    ("backoff-101", _with(training={"backoffLimit": 101}), "spec.training.backoffLimit"),
    ("enabled-zero-replicas", _with(training={"enabled": True, "replicas": 0}), "spec.training.replicas"),
    ("pull-policy", _with(imagePullPolicy="Sometimes"), "spec.imagePullPolicy"),
    ("score-batch-1", _with(score={"batchSize": 1}), "spec.score.batchSize"),
    ("latency-repeats-0", _with(score={"latency": {"repeats": 0}}), "spec.score.latency.repeats"),
    ("proxies-string", _with(score={"proxies": "synflow"}), "spec.score.proxies"),
    ("claim-int", _with(storage={"claimName": 5}), "spec.storage.claimName"),
    ("suspend-string", _with(suspend="yes"), "spec.suspend"),
    ("ttl-negative", _with(ttlSecondsAfterFinished=-5), "spec.ttlSecondsAfterFinished"),
    ("search-not-object", _with(search=[1, 2]), "spec.search"),
    ("pod-template-string", _with(podTemplate="labels"), "spec.podTemplate"),
    (
        "pod-template-labels-list",
        _with(podTemplate={"metadata": {"labels": ["a"]}}),
        "spec.podTemplate.metadata.labels",
    ),
    ("pull-secrets-string", _with(imagePullSecrets="regcred"), "spec.imagePullSecrets"),
]
