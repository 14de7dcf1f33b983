"""The default `cnn` DE-Score on two digits CNN families it was never fitted on (issue #14).

The `cnn` default weights ({layer_gain: 1}) were chosen on 60 TUNING networks of the `digits`
preset (`digits_correlation.py`) and looked at three times on its 120 REPORT networks. This
script builds two NEW families in the same `cnn` space, configured differently from that preset
(passed as `spec.searchSpace` overrides on top of `preset: digits`), trains them with the same
ground-truth protocol (v2: 1000 digits, 20 epochs of AdamW, 3 seeds, accuracy on the other 797
images; `digits_correlation.train_once`), fits NOTHING on them, and reports the default
DE-Score against params, synflow, zico and naswot, each family once.

* Family A, free size: 4 stages (strides 1, 2, 2, 1; the preset has 3), depth 1-3 (preset 1-2),
  kernels 1 and 3 (preset 3 and 5), expansion 0.25 and 2 (preset 0.5 and 1), narrower stage
  widths; random draws (sampling seed 1401), ~3k-400k parameters.
* Family B, fixed parameter budget: 2 stages (strides 2, 1: the 8x8 image is halved at once),
  depth 1-4, kernels 3 and 5, expansion 0.5/1/2, wider stages; every network within +-10% of the
  median parameter count of its own random pool (sampling seed 1402), where params cannot rank.

Both are disjoint from every structure `digits_correlation.py` trained or scored (checked by
structure hash). The families, seeds and sizes were fixed before any network was trained.

Scores are what a search computes today for a digits job (`denas run deploy/samples/digits.yaml`
with only `spec.searchSpace` replaced by the family's overrides): the job trains on `digits`, so
every candidate is scored on ONE batch of 16 images of that data set's training split drawn by the
search seed, with the classification loss (`scoreInputs: dataset:digits`,
`denas.search.score_inputs`), weights initialised from `candidate_seed(hash, 0)`, calibration key
`cnn/digits`, through `DeNASScorer` itself (latency not measured). The four single proxies are
scored on the same batch, seed and model; the same proxies on the space's synthetic batch (what
`digits_correlation.py` uses) are kept for reference.

    OMP_NUM_THREADS=1 nice -n 19 python benchmarks/digits_unseen.py --estimate        # 2 nets, CPU estimate
    OMP_NUM_THREADS=1 nice -n 19 python benchmarks/digits_unseen.py --train 0/2 &     # resumable shards
    OMP_NUM_THREADS=1 nice -n 19 python benchmarks/digits_unseen.py --train 1/2 &
    OMP_NUM_THREADS=1 nice -n 19 python benchmarks/digits_unseen.py --score           # proxies (cached)
    OMP_NUM_THREADS=1 python benchmarks/digits_unseen.py --json benchmarks/figures/digits_unseen.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from scipy.stats import kendalltau

sys.path.insert(0, str(Path(__file__).resolve().parent))
import digits_correlation as dc  # noqa: E402  (the v2 protocol and helpers, reused as they are)

import denas.scores as scores  # noqa: E402
from denas import spaces  # noqa: E402
from denas.search.config import SearchConfig  # noqa: E402
from denas.search.evaluator import DeNASScorer, candidate_seed  # noqa: E402
from denas.search.score_inputs import score_inputs  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = HERE / "data"
PROGRESS = "cnn_digits_unseen.progress{}.jsonl"  # one per training shard, in DATA
SCORES = DATA / "cnn_digits_unseen_scores.jsonl"  # proxy values per structure hash
SAMPLE_JOB = ROOT / "deploy" / "samples" / "digits.yaml"

# Fixed before anything was trained: the families, their sampling seeds and sizes.
FAMILIES: dict[str, dict] = {
    "A": {
        "title": "free size",
        "overrides": {
            "preset": "digits",
            "stage_strides": [1, 2, 2, 1],
            "stem_channels": [8, 16],
            "channels": [[8, 16], [16, 24], [24, 32], [32, 48]],
            "depth": [1, 2, 3],
            "kernel": [1, 3],
            "expansion": [0.25, 2.0],
        },
        "seed": 1401,
        "n": 60,
        "band": None,
    },
    "B": {
        "title": "fixed parameter budget (+-10%)",
        "overrides": {
            "preset": "digits",
            "stage_strides": [2, 1],
            "stem_channels": [16, 24],
            "channels": [{"min": 16, "max": 32, "step": 8}, {"min": 24, "max": 48, "step": 8}],
            "depth": [1, 2, 3, 4],
            "kernel": [3, 5],
            "expansion": [0.5, 1.0, 2.0],
        },
        "seed": 1402,
        "n": 60,
        "band": 0.10,
    },
}
SINGLE = ("params", "synflow", "zico", "naswot")  # the single proxies the default is judged against
EXTRA = ("layer_gain", "flops")  # layer_gain: the default's one component (a consistency check)


def family_space(name: str) -> spaces.SearchSpace:
    return spaces.get("cnn", FAMILIES[name]["overrides"])


def known_hashes() -> set[str]:
    """Every structure digits_correlation.py trained or scored (report, tuning, v1, proxy cache)."""
    preset = spaces.get("cnn", {"preset": "digits"})
    known = {preset.hash(s) for s, _, _ in dc.pick_structures(preset)}
    for path in (dc.TRUTH, dc.TRUTH_V1):
        if path.exists():
            known |= {
                n.get("hash") or preset.hash(n["structure"]) for n in json.loads(path.read_text())["networks"]
            }
    for path in DATA.glob(dc.TRUTH.stem + ".progress*.jsonl"):
        known |= {json.loads(line)["hash"] for line in path.read_text().splitlines() if line.strip()}
    if dc.PROXIES.exists():
        known |= {json.loads(line)["hash"] for line in dc.PROXIES.read_text().splitlines() if line.strip()}
    return known


def pick(name: str, known: set[str]) -> tuple[list[dict], dict]:
    """The family's networks (draw order of its seeded pool) and how they were drawn."""
    fam = FAMILIES[name]
    space = family_space(name)
    pool = [s for s in dc._sample(space, fam["seed"]) if space.hash(s) not in known]
    info: dict = {"pool": len(pool)}
    if fam["band"] is not None:
        median = statistics.median(space.count_params(s) for s in pool)
        lo, hi = (1 - fam["band"]) * median, (1 + fam["band"]) * median
        pool = [s for s in pool if lo <= space.count_params(s) <= hi]
        info.update(median_params=median, window=[lo, hi], in_window=len(pool))
    if len(pool) < fam["n"]:
        raise SystemExit(f"family {name}: only {len(pool)} networks to draw, {fam['n']} wanted")
    return pool[: fam["n"]], info


def plan() -> list[tuple[str, dict]]:
    """(family, structure) of every network, A and B interleaved so that any prefix trained so
    far is balanced between the families (the training is resumable and may be cut short)."""
    known = known_hashes()
    nets = {name: pick(name, known)[0] for name in FAMILIES}
    hashes = [family_space(f).hash(s) for f, ss in nets.items() for s in ss]
    assert len(set(hashes)) == len(hashes) and not set(hashes) & known, "families must be new and disjoint"
    order: list[tuple[str, dict]] = []
    for k in range(max(len(v) for v in nets.values())):
        order += [(f, nets[f][k]) for f in FAMILIES if k < len(nets[f])]
    return order


def done() -> dict[str, dict]:
    out = {}
    for path in DATA.glob(PROGRESS.format("*")):
        for line in path.read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                out[rec["hash"]] = rec
    return out


def train_net(family: str, structure: dict, data: dc.Data) -> dict:
    space = family_space(family)
    runs = []
    for seed in dc.SEEDS:
        torch.manual_seed(seed)
        t, c = time.time(), time.process_time()
        res = dc.train_once(space.build(structure), data, seed)
        runs.append(
            {**res, "seconds": round(time.time() - t, 2), "cpu_seconds": round(time.process_time() - c, 2)}
        )
    return {
        "family": family,
        "structure": structure,
        "hash": space.hash(structure),
        "params": space.count_params(structure),
        "flops": space.count_flops(structure),
        "runs": runs,
        "mean_acc": float(np.mean([r["acc"] for r in runs])),
    }


def _write(shard: int, rec: dict) -> None:
    with (DATA / PROGRESS.format(shard)).open("a") as fh:
        fh.write(json.dumps(rec) + "\n")


def estimate() -> None:
    """Train the first network of each family (kept in progress0) and extrapolate the CPU time
    of all of them: per family, CPU seconds per network x networks, and FLOPs-proportional."""
    order, trained = plan(), done()
    data = dc.digits_split()
    total_mean = total_flops = 0.0
    for name in FAMILIES:
        space = family_space(name)
        mine = [s for f, s in order if f == name]
        first = mine[0]
        rec = trained.get(space.hash(first))
        if rec is None:
            rec = train_net(name, first, data)
            _write(0, rec)
        cpu = sum(r["cpu_seconds"] for r in rec["runs"])
        flops = [space.count_flops(s) for s in mine]
        by_mean = cpu * len(mine)
        by_flops = cpu * sum(flops) / rec["flops"]
        total_mean, total_flops = total_mean + by_mean, total_flops + by_flops
        print(
            f"family {name}: first net {rec['params']} params, {rec['flops']} MACs: {cpu:.1f} CPU-s for "
            f"{len(rec['runs'])} runs; {len(mine)} nets ~{by_mean / 60:.0f} CPU-min (x nets) / "
            f"~{by_flops / 60:.0f} CPU-min (FLOPs-proportional; mean MACs {np.mean(flops):.0f})"
        )
    lo, hi = sorted((total_mean, total_flops))
    print(f"estimated total: {lo / 60:.0f}-{hi / 60:.0f} CPU-min for all networks")


def train_shard(shard: int, shards: int) -> None:
    data = dc.digits_split()
    trained = done()
    mine = [
        (f, s)
        for k, (f, s) in enumerate(plan())
        # pairs (one network of each family) go round the shards: every shard trains both
        # families, so whatever is trained when the job stops is balanced between them
        if (k // len(FAMILIES)) % shards == shard and family_space(f).hash(s) not in trained
    ]
    start, cpu = time.time(), 0.0
    for k, (family, structure) in enumerate(mine, 1):
        rec = train_net(family, structure, data)
        _write(shard, rec)
        cpu += sum(r["cpu_seconds"] for r in rec["runs"])
        rate = (time.time() - start) / k
        print(
            f"shard {shard}: {k}/{len(mine)} ({family}, {rec['mean_acc']:.3f}) {rate:.1f} s/net wall, "
            f"{cpu / k:.1f} CPU-s/net, ~{rate * (len(mine) - k) / 60:.0f} min left",
            file=sys.stderr,
            flush=True,
        )


# ----- scoring ------------------------------------------------------------------------------------
def job_config(family: str) -> SearchConfig:
    """The sample digits job with its search space replaced by the family's overrides."""
    spec = yaml.safe_load(SAMPLE_JOB.read_text())["spec"]
    spec["searchSpace"] = dict(FAMILIES[family]["overrides"])
    return SearchConfig.from_spec(spec)


def score_net(family: str, structure: dict, scorer: DeNASScorer) -> dict:
    """Default DE-Score exactly as the search computes it, then the single proxies on the same
    batch / seed / model, then on the space's synthetic batch (seed 0 init, as digits_correlation)."""
    space = family_space(family)
    config = job_config(family)
    h = space.hash(structure)
    seed = candidate_seed(h, config.seed)
    default, _ = scorer(space, structure, seed, config)
    batch = score_inputs(space, config)
    torch.manual_seed(seed)
    model, _ = batch.build(structure)
    names = [*SINGLE, *EXTRA]
    no_weights = {c: 0.0 for c in scores.resolve_weights("cnn")}
    task = scores.score_model(
        model,
        batch.inputs,
        batch.targets,
        loss_fn=batch.loss_fn,
        proxies=names,
        weights=no_weights,
        seed=seed,
    )
    x, y = space.example_inputs(16, seed=0)
    torch.manual_seed(0)
    synthetic = scores.score_model(space.build(structure), x, y, proxies=names, weights=no_weights)
    return {
        "hash": h,
        "family": family,
        "score_inputs": batch.label,
        "score_seed": seed,
        "default": default,
        "task": {k: float(v) for k, v in task.items() if k != "de_score"},
        "synthetic": {k: float(v) for k, v in synthetic.items() if k != "de_score"},
    }


def score_all() -> dict[str, dict]:
    cache = {}
    if SCORES.exists():
        cache = {r["hash"]: r for r in map(json.loads, SCORES.read_text().splitlines()) if r}
    scorer = DeNASScorer(measure=False)
    order = plan()
    for k, (family, structure) in enumerate(order, 1):
        h = family_space(family).hash(structure)
        if h in cache:
            continue
        rec = score_net(family, structure, scorer)
        cache[h] = rec
        with SCORES.open("a") as fh:
            fh.write(json.dumps(rec) + "\n")
        print(f"scored {k}/{len(order)}", file=sys.stderr, flush=True)
    return cache


# ----- the table ----------------------------------------------------------------------------------
def columns(nets: list[dict], sc: dict[str, dict]) -> dict[str, list[float]]:
    rows = [sc[n["hash"]] for n in nets]
    cols = {"DE-Score (cnn default, as the search)": [r["default"]["de_score"] for r in rows]}
    for p in SINGLE:
        cols[p] = [r["task"][p] for r in rows]
    cols["layer_gain (the default's component)"] = [r["task"]["layer_gain"] for r in rows]
    cols["flops (reference)"] = [float(n["flops"]) for n in nets]
    for p in ("synflow", "zico", "naswot"):
        cols[f"{p} (synthetic batch)"] = [r["synthetic"][p] for r in rows]
    return cols


def report(json_path: Path | None, selftest: bool = False) -> int:
    order, trained, sc = plan(), done(), score_all()
    if selftest:  # exercise the table without looking: accuracies permuted within each family
        rng = np.random.default_rng(0)
        for name in FAMILIES:
            recs = [r for r in trained.values() if r["family"] == name]
            for r, acc in zip(recs, rng.permutation([r["mean_acc"] for r in recs])):
                trained[r["hash"]] = {**r, "mean_acc": float(acc)}
        json_path = None
        print("SELF-TEST: the truth is PERMUTED; these figures mean nothing")
    out: dict = {
        "protocol": {
            "truth": "digits_correlation.py v2: 1000 train / 797 held-out digits (split seed "
            f"{dc.SPLIT_SEED}), {dc.EPOCHS} epochs AdamW lr {dc.LR} wd {dc.WD}, batch {dc.BATCH}, "
            f"cosine to 0 per step, seeds {list(dc.SEEDS)}; truth = mean held-out accuracy",
            "scoring": "DeNASScorer on the sample digits job (deploy/samples/digits.yaml) with "
            "spec.searchSpace = the family's overrides: scoreInputs dataset:digits (batch 16 of "
            "the job's training split, search seed 0, cross-entropy), init seed "
            "candidate_seed(hash, 0), calibration cnn/digits; single proxies on the same batch, "
            "seed and model; '(synthetic batch)': space.example_inputs(16, 0), init seed 0",
            "default_weights": scores.resolve_weights("cnn"),
            "fitted_on_these_families": "nothing",
        },
        "families": {},
    }
    print(f"default cnn weights: {scores.resolve_weights('cnn')} (fitted on the digits preset's TUNING set)")
    goal_all = True
    known = known_hashes()
    for name, fam in FAMILIES.items():
        space = family_space(name)
        planned = [s for f, s in order if f == name]
        nets = [trained[space.hash(s)] for s in planned if space.hash(s) in trained]
        _, info = pick(name, known)
        truth = [n["mean_acc"] for n in nets]
        res: dict = {
            "title": fam["title"],
            "overrides": fam["overrides"],
            "sampling_seed": fam["seed"],
            "draw": info,
            "planned": len(planned),
            "trained": len(nets),
        }
        out["families"][name] = res
        print(f"\nFamily {name} ({fam['title']}): {len(nets)} of {len(planned)} networks trained")
        if len(nets) < 5:
            goal_all = False
            continue
        accs = np.array([[r["acc"] for r in n["runs"]] for n in nets])
        res.update(
            accuracy=[min(truth), max(truth)],
            params=[min(n["params"] for n in nets), max(n["params"] for n in nets)],
            between_sd=float(accs.mean(1).std()),
            seed_sd=float(accs.std(1, ddof=1).mean()),
            fit=float(np.mean([r["train_acc"] >= 1.0 for n in nets for r in n["runs"]])),
            cpu_seconds=float(sum(r.get("cpu_seconds", 0) for n in nets for r in n["runs"])),
            wall_seconds=float(sum(r["seconds"] for n in nets for r in n["runs"])),
        )
        print(
            f"accuracy {min(truth):.3f}..{max(truth):.3f}, params {res['params'][0]}..{res['params'][1]}, "
            f"between-net sd {res['between_sd']:.4f}, seed sd {res['seed_sd']:.4f}, "
            f"{res['fit']:.1%} of runs at 100% train acc, {res['cpu_seconds'] / 60:.1f} CPU-min"
        )
        print(f"{'score':44s}{'Spearman':>10s}{'Kendall':>10s}")
        cols = columns(nets, sc)
        res["spearman"], res["kendall"] = {}, {}
        for label, vals in cols.items():
            res["spearman"][label] = dc.rho(vals, truth)
            res["kendall"][label] = float(kendalltau(vals, truth).statistic)
            print(f"{label:44s}{res['spearman'][label]:10.3f}{res['kendall'][label]:10.3f}")
        depth = [sum(st["depth"] for st in n["structure"]["stages"]) for n in nets]
        res["depth_spearman"] = dc.rho(depth, truth)
        print(f"(for reading the table: Spearman of accuracy vs total depth {res['depth_spearman']:.3f})")
        de_label = next(iter(cols))
        de = res["spearman"][de_label]
        best = max(SINGLE, key=lambda p: res["spearman"][p])
        lo, hi = dc.paired_bootstrap(cols[de_label], cols[best], truth)
        met = de > res["spearman"][best]
        goal_all &= met
        res.update(best_single=best, default_minus_best_ci95=[lo, hi], goal_met=met)
        print(
            f"default {de:.3f} vs best single proxy {best} {res['spearman'][best]:.3f} -> "
            f"{'BEATS it' if met else 'does NOT beat it'}; 95% paired-bootstrap interval of the "
            f"difference [{lo:+.3f}, {hi:+.3f}]"
        )
    out["goal_met_on_both"] = goal_all
    out["networks"] = [
        {**trained[h], "scores": sc.get(h)}
        for h in (family_space(f).hash(s) for f, s in order)
        if h in trained
    ]
    print(
        f"\ngoal (default beats the best single proxy on both families): {'MET' if goal_all else 'NOT met'}"
    )
    if json_path:
        json_path.write_text(json.dumps(out, indent=1))
        print(f"wrote {json_path}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--estimate", action="store_true", help="train 2 networks, print the CPU estimate")
    parser.add_argument("--train", metavar="I/N", help="train shard I of N (pair k//2 %% N == I), resuming")
    parser.add_argument("--score", action="store_true", help="score every planned network (cached), no table")
    parser.add_argument("--plan", action="store_true", help="print the planned networks and exit")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument(
        "--selftest",
        action="store_true",
        help="the table on permuted accuracies (checks the code, shows nothing)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.plan:
        known = known_hashes()
        for name in FAMILIES:
            nets, info = pick(name, known)
            space = family_space(name)
            p = [space.count_params(s) for s in nets]
            print(f"family {name}: {len(nets)} networks, params {min(p)}..{max(p)}, draw {info}")
        return 0
    if args.estimate:
        estimate()
        return 0
    if args.train:
        shard, shards = (int(v) for v in args.train.split("/"))
        train_shard(shard, shards)
        return 0
    if args.score:
        score_all()
        return 0
    return report(args.json, selftest=args.selftest)


if __name__ == "__main__":
    sys.exit(main())
