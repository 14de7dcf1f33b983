"""The model card: what was exported, how it scored, what it costs here, and where it came from.

Written twice from one dict: ``card.json`` for machines and ``card.md`` for people.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from denas import __version__


def spec_hash(spec: dict[str, Any]) -> str:
    """sha256 of the spec as canonical JSON (sorted keys): equal specs, equal hashes."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()


def search_entry(result: dict[str, Any] | None, structure_hash: str) -> dict[str, Any]:
    """The search's record of this structure (scores, fitness, searched latency), if it has one."""
    for entry in (result or {}).get("best", []):
        if entry.get("hash") == structure_hash:
            return entry
    return {}


def build_card(
    *,
    job_name: str,
    spec: dict[str, Any],
    trained: Any,
    result: dict[str, Any] | None,
    artifacts: dict[str, dict[str, Any]],
    latency: dict[str, Any],
    ipex: dict[str, Any] | None,
    created: str,
) -> dict[str, Any]:
    entry = search_entry(result, trained.structure_hash)
    metrics = trained.metrics
    space = trained.space
    problems = [f"{name}: {a['error']}" for name, a in artifacts.items() if a.get("error")]
    problems += [
        f"{name}: check failed, max abs diff {a['check']['max_abs_diff']:.3g} > {a['check']['tolerance']:g}"
        for name, a in artifacts.items()
        if a.get("check") and not a["check"]["ok"]
    ]
    return {
        "job": job_name,
        "domain": trained.domain,
        "task": trained.task,
        "structure": trained.structure,
        "structure_hash": trained.structure_hash,
        "params": sum(p.numel() for p in trained.model.parameters()),
        "params_analytic": space.count_params(trained.structure),
        "flops": space.count_flops(trained.structure, 1),
        "flops_note": "multiply-accumulates of one example (analytic, the search's count)",
        "scores": entry.get("scores", {}),
        "fitness": entry.get("fitness"),
        "search_latency_ms": entry.get("latency_ms"),
        "training": {
            "dataset": metrics.get("dataset"),
            "epochs": metrics.get("epochs"),
            "metric_name": metrics.get("metric_name"),
            "metric": metrics.get("metric"),
        },
        "latency": latency,
        "ipex_bf16": ipex,
        "artifacts": artifacts,
        "inputs": list(trained.input_names),
        "output": trained.output_name,
        "ok": not problems,
        "problems": problems,
        "spec": spec,
        "spec_hash": spec_hash(spec),
        "denas_version": __version__,
        "created": created,
    }


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "n/a" if value is None else str(value)


def _pool(spec: dict[str, Any]) -> str:
    """The job's node pool as its spec.hardware.nodeSelector says it (empty: any node)."""
    selector = ((spec or {}).get("hardware") or {}).get("nodeSelector") or {}
    return ", ".join(f"{k}={v}" for k, v in sorted(selector.items()))


def render_markdown(card: dict[str, Any]) -> str:
    lat, train = card["latency"], card["training"]
    lines = [
        f"# Model card: {card['job']} ({card['domain']})",
        "",
        f"Exported by DeNAS {card['denas_version']} on {card['created']}. "
        + ("All checks passed." if card["ok"] else "**Export problems:** " + "; ".join(card["problems"])),
        "",
        "## Structure",
        f"`{json.dumps(card['structure'], sort_keys=True)}` (hash `{card['structure_hash']}`)",
        "",
        f"- parameters: {card['params']:,}",
        f"- FLOPs: {card['flops']:,} ({card['flops_note']})",
        f"- inputs: {', '.join(card['inputs'])}; output: {card['output']} (task {card['task']})",
        "",
        "## Search scores",
        "| component | value |",
        "|---|---|",
        *[f"| {k} | {_fmt(v)} |" for k, v in sorted(card["scores"].items())],
        f"| fitness | {_fmt(card['fitness'])} |",
        f"| latency during search (ms) | {_fmt(card['search_latency_ms'])} |",
        "",
        "## Training",
        f"- dataset: {_fmt((train['dataset'] or {}).get('name'))}, epochs: {_fmt(train['epochs'])}",
        f"- final {train['metric_name']}: {_fmt(train['metric'])}",
        "",
        "## Latency on this node",
        f"Node {_fmt(lat['hardware'].get('node'))}"
        + (f" in the pool selected by {_pool(card['spec'])}" if _pool(card["spec"]) else "")
        + ": "
        f"CPU {lat['hardware']['cpu']} (flags {', '.join(lat['hardware']['cpu_flags']) or 'none'}), "
        f"{lat['hardware']['threads']} threads, batch {lat['batch_size']}, median of {lat['rounds']} interleaved rounds; "
        f"1-min load average {lat['hardware'].get('load_average_1m')} on {lat['hardware'].get('cpus')} CPUs "
        "(a loaded node slows eager PyTorch most).",
        "",
        "| variant | ms | speedup vs eager |",
        "|---|---|---|",
        *[f"| {name} | {ms:.3f} | {lat['ms']['eager'] / ms:.2f}x |" for name, ms in lat["ms"].items() if ms],
        "",
    ]
    ipex = card.get("ipex_bf16") or {}
    if ipex:
        verdict = "kept" if ipex.get("kept") else f"not kept ({ipex.get('reason')})"
        speed = ipex.get("speedup_vs_best_fp32")
        lines += [
            f"IPEX bf16 TorchScript: {verdict}"
            + (f"; measured {speed:.2f}x vs the faster of eager/TorchScript fp32" if speed else ""),
            "",
        ]
    lines += ["## Artifacts", "| format | files | bytes | check |", "|---|---|---|---|"]
    for name, a in card["artifacts"].items():
        if a.get("skipped"):
            lines.append(f"| {name} | skipped: {a['skipped']} | | |")
        elif a.get("error"):
            lines.append(f"| {name} | FAILED: {a['error']} | | |")
        else:
            c = a["check"]
            verdict = "ok" if c["ok"] else "FAILED"
            lines.append(
                f"| {name} | {', '.join(a['files'])} | {a['bytes']:,} | {verdict}: max abs diff {c['max_abs_diff']:.2g} (<= {c['tolerance']:g}) |"
            )
    lines += [
        "",
        "## Provenance",
        f"Job spec sha256 `{card['spec_hash']}`:",
        "",
        "```json",
        json.dumps(card["spec"], indent=2, sort_keys=True),
        "```",
        "",
    ]
    return "\n".join(lines)


#: keys every card DeNAS writes has; `written_by_denas` tells our export folder from a user's by them
CARD_KEYS = ("denas_version", "structure_hash", "spec_hash", "artifacts")


def written_by_denas(folder: Path) -> bool:
    """Whether ``folder`` is an export DeNAS wrote: a real folder (no symlink) holding a
    ``card.json`` that parses as DeNAS's card. Only such a folder is ever replaced (`denas export`)
    or deleted (`denas run --fresh`); a user's own ``model/`` folder is left alone."""
    card = folder / "card.json"
    if folder.is_symlink() or not folder.is_dir() or card.is_symlink() or not card.is_file():
        return False
    try:
        data = json.loads(card.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and all(k in data for k in CARD_KEYS)


def write_card(folder: Path, card: dict[str, Any]) -> None:
    (folder / "card.json").write_text(json.dumps(card, indent=2, default=str) + "\n")
    (folder / "card.md").write_text(render_markdown(card))
