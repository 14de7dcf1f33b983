"""Operator scale: N concurrent DeNASJobs against the emulated API server.

Pods are simulated as instant successes by the emulator (search rank 0 leaves a tiny result),
so only the operator's own work is measured: the real operator process (`python -m
denas_operator`), its resident memory (RSS, peak), the latency from a job's create to its
first pod's create (both stamped by the emulator's clock), time until every job Succeeded,
and errors (reconcile errors from /metrics, jobs not Succeeded).

A baseline of one job on an idle operator is measured in the same run; latencies are printed
beside it as ratios, so the figures travel between machines.

    python benchmarks/operator_scale.py --jobs 200
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
from kubernetes import client, config

# The emulator is a test double: it lives with the e2e tests, not in the shipped package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))
from kube_doubles.emulator import EmulatorServer  # noqa: E402

GROUP, VERSION, PLURAL = "denas.io", "v1alpha1", "denasjobs"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def job(name: str) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DeNASJob",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "domain": "cnn",
            "search": {"population": 4, "generations": 1},
            "training": {"replicas": 1, "epochs": 1},
        },
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


class RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return
            self.stop.wait(0.2)


def run_batch(custom, server: EmulatorServer, names: list[str], timeout: float) -> dict:
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda n: custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, job(n)),
                names,
            )
        )
    applied = time.monotonic() - started
    em = server.emulator
    latencies: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    phases: dict[str, str] = {}
    while time.monotonic() < deadline:
        for n in names:
            if n not in latencies and ("pods", "default", f"{n}-search-0") in em.created_at:
                latencies[n] = (
                    em.created_at[("pods", "default", f"{n}-search-0")]
                    - em.created_at[(PLURAL, "default", n)]
                )
        # Read in-process: a LIST of every job through HTTP each poll would load the emulator.
        every = em.phases(f"{GROUP}/{VERSION}/{PLURAL}", "default")
        phases = {n: every.get(n) for n in names}
        if all(phases.get(n) in ("Succeeded", "Failed") for n in names) and len(latencies) == len(names):
            break
        time.sleep(0.25)
    t0 = min(em.created_at[(PLURAL, "default", n)] for n in names)
    timeline = sorted(
        (
            em.created_at[(PLURAL, "default", n)] - t0,
            em.created_at.get(("pods", "default", f"{n}-search-0"), 0) - t0,
        )
        for n in names
    )
    return {
        "timeline": timeline,
        "applied_s": applied,
        "all_done_s": time.monotonic() - started,
        "latencies": list(latencies.values()),
        "succeeded": sum(p == "Succeeded" for p in phases.values()),
        "not_succeeded": {n: phases.get(n) for n in names if phases.get(n) != "Succeeded"},
    }


def scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if (
            line.startswith("denas_reconcile_errors_total")
            or line.startswith("denas_reconcile_duration_seconds_count")
            or line.startswith("denas_reconcile_duration_seconds_sum")
        ):
            key = line.rsplit(" ", 1)[0]
            out[key] = float(line.rsplit(" ", 1)[1])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--timeline", action="store_true", help="print jobs and first pods over time")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="denas-scale-"))
    server = EmulatorServer(workdir, instant_pods=True).start()
    custom = client.CustomObjectsApi(config.new_client_from_config(str(server.kubeconfig)))
    metrics_port, live_port = free_port(), free_port()
    log = open(workdir / "operator.log", "wb")
    op = subprocess.Popen(
        [
            # DENAS_BENCH_WRAP="py-spy record -o op.txt --format raw --" samples every thread
            *shlex.split(os.environ.get("DENAS_BENCH_WRAP", "")),
            sys.executable,
            # DENAS_BENCH_PROFILE=file.prof: profile the operator (pstats) to see where its time goes
            *(
                ["-m", "cProfile", "-o", os.environ["DENAS_BENCH_PROFILE"]]
                if os.environ.get("DENAS_BENCH_PROFILE")
                else []
            ),
            "-m",
            "denas_operator",
            "-n",
            "default",
            "--standalone",
            "--metrics-port",
            str(metrics_port),
            "--liveness",
            f"http://127.0.0.1:{live_port}/healthz",
            "--readiness",
            f"http://127.0.0.1:{free_port()}/readyz",  # not the default port: runs may overlap
        ],
        env=dict(os.environ, KUBECONFIG=str(server.kubeconfig)),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        for _ in range(150):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{live_port}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        sampler = RssSampler(op.pid)
        sampler.start()
        idle_rss = psutil.Process(op.pid).memory_info().rss

        baseline = run_batch(custom, server, ["baseline-0"], 60)
        base_latency = baseline["latencies"][0] if baseline["latencies"] else float("nan")

        names = [f"scale-{i:03d}" for i in range(args.jobs)]
        batch = run_batch(custom, server, names, args.timeout)
        time.sleep(1)
        metrics = scrape(metrics_port)
        cpu = psutil.Process(op.pid).cpu_times()
        own = psutil.Process().cpu_times()  # the emulator and the client threads share this process
        sampler.stop.set()
        lat = batch["latencies"]
        errors = sum(v for k, v in metrics.items() if k.startswith("denas_reconcile_errors_total"))
        reconciles = next(
            (v for k, v in metrics.items() if k.startswith("denas_reconcile_duration_seconds_count")), 0
        )
        figures = {
            "jobs": args.jobs,
            "operator_rss_idle_mib": round(idle_rss / 2**20, 1),
            "operator_rss_peak_mib": round(sampler.peak / 2**20, 1),
            "baseline_first_pod_s": round(base_latency, 3),
            "first_pod_p50_s": round(statistics.median(lat), 3) if lat else None,
            "first_pod_p95_s": round(percentile(lat, 0.95), 3) if lat else None,
            "first_pod_max_s": round(max(lat), 3) if lat else None,
            "p95_vs_baseline": round(percentile(lat, 0.95) / base_latency, 1) if lat else None,
            "apply_all_s": round(batch["applied_s"], 2),
            "all_succeeded_s": round(batch["all_done_s"], 2),
            "succeeded": batch["succeeded"],
            "not_succeeded": batch["not_succeeded"],
            "operator_cpu_s": round(cpu.user + cpu.system, 1),
            "emulator_and_clients_cpu_s": round(own.user + own.system, 1),
            "reconciles": int(reconciles),
            "reconcile_errors": int(errors),
            "cpu_count": os.cpu_count(),
            "load_avg_1m": round(os.getloadavg()[0], 2),
        }
        print(json.dumps(figures, indent=2))
        if args.timeline:
            print("seconds after the first create: jobs created / first pods created by then")
            for t in [0.25 * i for i in range(1, 1 + int(4 * max(p for _, p in batch["timeline"])) + 1)]:
                made = sum(c <= t for c, _ in batch["timeline"])
                pods = sum(0 < p <= t for _, p in batch["timeline"])
                print(f"  {t:5.2f} s  {made:4d} / {pods:4d}")
        counts = server.emulator.request_counts if server.emulator else {}
        print("API requests per job (action, resource, subresource), all jobs:")
        for (action, plural, sub), count in sorted(counts.items(), key=lambda kv: -kv[1]):
            print(f"  {count / (args.jobs + 1):7.2f}  {action} {plural}{'/' + sub if sub else ''}")
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2))
        ok = figures["succeeded"] == args.jobs and not errors
        return 0 if ok else 1
    finally:
        op.terminate()
        try:
            op.wait(15)
        except subprocess.TimeoutExpired:
            op.kill()
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
