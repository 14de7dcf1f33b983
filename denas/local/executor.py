"""Run a DeNASJob on this machine: processes instead of pods, a directory instead of a PVC.

The executor mirrors the operator step for step: `search.replicas` search processes (torch.distributed
over loopback, rank 0 runs the strategy) write `search/result.json`; then `training.replicas` torchrun
"nodes" with the PyTorchJob environment contract train the chosen structure into `train/`. Each step is
skipped when its output already exists, and each step resumes from its own checkpoints, so
interrupting `denas run` and running it again continues where it stopped.

Layout of the output directory (see `denas.local.rundir` for who may delete what)::

    DIR/.denas-run.json    the marker: this job's name, spec and stage fingerprints
    DIR/status.json        the status the operator would write into the CR, plus `stages`
                           (start, completion and wall seconds of the search, the training and
                           the export; wall seconds of validation and the report)
    DIR/result.json        the search's result (best structures, Pareto front)
    DIR/search/            search checkpoints, history.jsonl, plots
    DIR/train/             training checkpoints, metrics.json, model.pt, history
    DIR/model/             the exported model (TorchScript, ONNX, HF folder) and card.md/card.json
    DIR/logs/              one log per process; failure.json when a stage failed
    DIR/report.html        one self-contained page with every plot
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from denas import status as st
from denas.job import Job
from denas.local.failure import Failure, first_failure, read_failure

FAILURE_FILE = "failure.json"  # under logs/: the failed process, its cause and log tail, for the report
Progress = Callable[[str, dict[str, Any]], None]


class StepFailed(RuntimeError):
    """A search or training process exited non-zero; `failure` names it, its cause and log tail."""

    def __init__(self, reason: str, message: str, failure: Failure | None = None):
        self.reason = reason
        self.failure = failure
        super().__init__(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


@dataclass
class LocalRun:
    job: Job
    job_file: Path
    out: Path
    on_progress: Progress = lambda kind, event: None
    status: dict[str, Any] = field(default_factory=dict)
    #: extra `denas search` arguments (a campaign passes its --score-store)
    search_args: list[str] = field(default_factory=list)
    #: CPUs this run's processes share (a campaign gives each of its parallel cells a share, so
    #: two cells never run twice as many threads as there are cores); default: all of this process's
    cpus: int | None = None

    def __post_init__(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        for sub in ("search", "train", "logs"):
            (self.out / sub).mkdir(exist_ok=True)
        previous = self.out / "status.json"
        self.status = json.loads(previous.read_text()) if previous.exists() else {}
        self.status.setdefault("conditions", [])
        self.status["observedGeneration"] = self.job.manifest["metadata"].get("generation", 1)
        self.status.setdefault("startTime", st.now())
        self.status["resultRef"] = {"path": str((self.out / "result.json").resolve())}

    def cpu_share(self) -> int:
        return max(1, self.cpus) if self.cpus else available_cpus()

    # ----- status ---------------------------------------------------------------------------
    def condition(self, type_: str, ok: bool, reason: str, message: str = "") -> None:
        self.status["conditions"] = st.set_condition(
            self.status["conditions"], type_, ok, reason, message, self.status["observedGeneration"]
        )
        self.save_status()

    def save_status(self) -> None:
        self.status["phase"] = st.phase(self.status["conditions"])
        tmp = self.out / "status.json.tmp"
        tmp.write_text(json.dumps(self.status, indent=2) + "\n")
        os.replace(tmp, self.out / "status.json")

    # ----- the job --------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        # A rerun starts a new attempt: the previous outcome (e.g. a Failed that the user has
        # fixed since) must not outlive it, or status.json would hold Failed and Succeeded at once.
        self.status["conditions"] = [
            c for c in self.status["conditions"] if c.get("type") not in (st.FAILED, st.SUCCEEDED)
        ]
        self.status.pop("completionTime", None)
        (self.out / "logs" / FAILURE_FILE).unlink(missing_ok=True)
        try:
            result = self.search()
            if self.job.spec["training"]["enabled"]:
                self.train(result)
                self.export()
        except StepFailed as exc:
            self._stop_running(exc.reason)
            self.condition(st.FAILED, True, exc.reason, str(exc))
            self.status["completionTime"] = st.now()
            self.save_status()
            if exc.failure is not None:
                record = {"reason": exc.reason, "message": str(exc), **vars(exc.failure)}
                (self.out / "logs" / FAILURE_FILE).write_text(json.dumps(record, indent=2) + "\n")
            raise
        except KeyboardInterrupt:
            self._stop_running("Interrupted")
            self.save_status()
            raise
        self.condition(st.SUCCEEDED, True, "JobSucceeded", self._success_message())
        self.status["completionTime"] = st.now()
        self.save_status()
        return self.status

    def _stop_running(self, reason: str) -> None:
        """No Running condition stays True once its processes are gone."""
        for type_ in (st.SEARCH_RUNNING, st.TRAINING_RUNNING):
            if st.condition_is_true(self.status["conditions"], type_):
                self.status["conditions"] = st.set_condition(
                    self.status["conditions"], type_, False, reason, "", self.status["observedGeneration"]
                )
        if self.status.get("training", {}).get("active"):
            self.status["training"]["active"] = 0

    def _stage_time(self, stage: str, started: float, finished: bool) -> None:
        """status.stages.<stage>: first start, completion and wall seconds summed over resumes."""
        record = self.status.setdefault("stages", {}).setdefault(stage, {})
        record.setdefault("startTime", st.now_from(started))
        record["seconds"] = round(record.get("seconds", 0.0) + time.time() - started, 1)
        if finished:
            record["completionTime"] = st.now()
        self.save_status()

    def _success_message(self) -> str:
        training = self.status.get("training", {})
        if "metric" in training:
            return (
                f"best structure trained: {training.get('metricName', 'metric')} = {training['metric']:.4f}"
            )
        return "search finished; training disabled"

    # ----- search ---------------------------------------------------------------------------
    def search(self) -> dict[str, Any]:
        spec = self.job.spec
        result_file = self.out / "search" / "result.json"
        if not result_file.exists():
            started = time.time()
            replicas = spec["search"]["replicas"]
            self.condition(st.SEARCH_RUNNING, True, "SearchStarted", f"{replicas} local search process(es)")
            port = free_port()
            threads = max(1, self.cpu_share() // replicas)
            procs = []
            for rank in range(replicas):
                env = {
                    "RANK": str(rank),
                    "WORLD_SIZE": str(replicas),
                    "LOCAL_RANK": str(rank),
                    "MASTER_ADDR": "127.0.0.1",
                    "MASTER_PORT": str(port),
                    "OMP_NUM_THREADS": str(threads),
                }
                cmd = [
                    sys.executable,
                    "-m",
                    "denas",
                    "search",
                    str(self.job_file),
                    "--out",
                    str(self.out / "search"),
                ]
                cmd += ["--resume", *self.search_args]
                procs.append(self._spawn(cmd, env, f"search-{rank}", watch=rank == 0))
            try:
                self._wait(procs, "SearchFailed", "search")
                if not result_file.exists():
                    raise StepFailed("SearchFailed", f"the search exited 0 but wrote no {result_file}")
            finally:
                self._stage_time("search", started, finished=result_file.exists())
        result = json.loads(result_file.read_text())
        shutil.copyfile(result_file, self.out / "result.json")
        self.status["bestStructures"] = st.best_structures(result, spec["search"]["topK"])
        # the search's own objective (DE-Score minus any weighted latency term), as its progress
        # events and the operator report it
        best = result["best"][0]["fitness"] if result.get("best") else None
        self.status["search"] = {
            **self.status.get("search", {}),
            "generations": spec["search"]["generations"],
            "evaluated": result.get("evaluated", self.status.get("search", {}).get("evaluated")),
            "bestScore": best,
            **st.score_counts(result),
        }
        self.status["conditions"] = st.set_condition(
            self.status["conditions"],
            st.SEARCH_RUNNING,
            False,
            "SearchFinished",
            "",
            self.status["observedGeneration"],
        )
        self.condition(
            st.SEARCH_SUCCEEDED,
            True,
            "SearchSucceeded",
            f"{len(result.get('best', []))} best structures; best fitness "
            + ("-" if best is None else f"{best:.4f}"),
        )
        return result

    # ----- training -------------------------------------------------------------------------
    def train(self, result: dict[str, Any]) -> None:
        spec = self.job.spec["training"]
        metrics_file = self.out / "train" / "metrics.json"
        if not metrics_file.exists():
            from denas.train.envvars import torchrun_command, torchrun_env

            started = time.time()
            nnodes, nproc = spec["replicas"], spec["nprocPerNode"]
            self.status["training"] = {"active": nnodes, "succeeded": 0, "failed": 0}
            self.condition(
                st.TRAINING_RUNNING, True, "TrainingStarted", f"{nnodes} node(s) x {nproc} process(es)"
            )
            port = free_port()
            threads = max(1, self.cpu_share() // (nnodes * nproc))
            train_args = [
                str(self.job_file),
                "--structure",
                str(self.out / "search" / "result.json"),
                "--out",
                str(self.out / "train"),
            ]
            procs = []
            for node in range(nnodes):
                env = torchrun_env(self.job.name, None, node, nnodes, nproc, port, master_addr="127.0.0.1")
                # torchrun resets OMP_NUM_THREADS to 1 for nproc > 1; DENAS_THREADS always wins.
                env["OMP_NUM_THREADS"] = env["DENAS_THREADS"] = str(threads)
                cmd = torchrun_command(
                    self.job.name,
                    None,
                    node,
                    nnodes,
                    nproc,
                    port,
                    master_addr="127.0.0.1",
                    train_args=train_args,
                    rendezvous_timeout=120,
                )
                procs.append(self._spawn(cmd, env, f"train-{node}", watch=node == 0))
            try:
                self._wait(procs, "TrainingFailed", "training")
            finally:
                self.status["training"]["active"] = 0
                self._stage_time("training", started, finished=metrics_file.exists())
            if not metrics_file.exists():
                raise StepFailed("TrainingFailed", f"training exited 0 but wrote no {metrics_file}")
        metrics = json.loads(metrics_file.read_text())
        self.status["training"] = {
            **self.status.get("training", {}),
            "active": 0,
            "succeeded": spec["replicas"],
            "failed": 0,
            "epoch": metrics.get("epochs", metrics.get("epoch")),
            "metric": metrics["metric"],
            "metricName": metrics["metric_name"],
        }
        self.status["conditions"] = st.set_condition(
            self.status["conditions"],
            st.TRAINING_RUNNING,
            False,
            "TrainingFinished",
            "",
            self.status["observedGeneration"],
        )
        self.condition(
            st.TRAINING_SUCCEEDED,
            True,
            "TrainingSucceeded",
            f"{metrics['metric_name']} = {metrics['metric']:.4f}",
        )

    # ----- export (denas.export: its own stage; a failure marks ExportFailed, never the job) ---
    def export(self) -> None:
        from denas.export.stage import export_due, local_export

        if not export_due(self.out, self.job.spec, self.status):  # disabled, or done on a resumed run
            return
        started = time.time()
        self.status = local_export(self.out, self.job.spec, self.job.name, self.status)
        self._stage_time("export", started, finished=True)  # also when it failed: it did run

    # ----- processes ------------------------------------------------------------------------
    def _spawn(
        self, cmd: list[str], env: dict[str, str], name: str, watch: bool
    ) -> tuple[str, subprocess.Popen, IO]:
        log = open(self.out / "logs" / f"{name}.log", "a")  # noqa: SIM115 - closed in _wait
        log.write(f"\n$ {' '.join(cmd)}\n")
        log.flush()
        full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(
            cmd,
            env=full_env,
            stdout=subprocess.PIPE if watch else log,
            stderr=log,
            text=True,
            cwd=os.getcwd(),
        )
        return name, proc, log

    def _wait(self, procs: list[tuple[str, subprocess.Popen, IO]], reason: str, what: str) -> None:
        """Relay the watched process's JSON lines as progress; fail fast when any process fails."""
        watched = next(p for _, p, _ in procs if p.stdout is not None)
        log0 = procs[0][2]
        try:
            for line in watched.stdout:
                log0.write(line)
                log0.flush()
                event = _json_line(line)
                if event is not None:
                    self._progress(what, event)
                failed = [(n, p) for n, p, _ in procs if p.poll() not in (None, 0)]
                if failed:
                    break
            deadline = time.monotonic() + 3600
            while any(p.poll() is None for _, p, _ in procs):
                if any(p.poll() not in (None, 0) for _, p, _ in procs) or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
        finally:
            bad = [(n, p.poll()) for n, p, _ in procs if p.poll() not in (None, 0)]
            # A failed process (or an interrupt): stop its peers instead of letting them wait on
            # collectives. SIGTERM lets them finish writing their checkpoint.
            if bad or any(p.poll() is None for _, p, _ in procs):
                for _, p, _ in procs:
                    if p.poll() is None:
                        p.terminate()
                for _, p, _ in procs:
                    try:
                        p.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        p.kill()
            for _, _, log in procs:
                log.close()
        if bad:
            failure = first_failure([read_failure(self.out / "logs" / f"{n}.log", n, c) for n, c in bad])
            rank = "" if failure.rank is None else f" (rank {failure.rank})"
            raise StepFailed(
                reason,
                f"{what} process {failure.process}{rank} exited with code {failure.exit_code}: "
                f"{failure.cause} (log: {self.out / 'logs' / (failure.process + '.log')})",
                failure,
            )

    def _progress(self, what: str, event: dict[str, Any]) -> None:
        with open(self.out / "logs" / f"{what}-events.jsonl", "a") as f:
            f.write(json.dumps(event) + "\n")
        if what == "search" and ("generation" in event or "selection" in event):
            self.status["search"] = {**self.status.get("search", {}), **st.search_progress(event)}
            self.save_status()
        elif what == "training" and event.get("phase") == "training":
            self.status["training"] = {**self.status.get("training", {}), **st.training_progress(event)}
            self.save_status()
        self.on_progress(what, event)


def _json_line(line: str) -> dict[str, Any] | None:
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        return None
    return event if isinstance(event, dict) else None
