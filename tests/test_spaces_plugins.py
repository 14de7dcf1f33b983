"""Plug-in spaces (`denas.spaces` entry points): the example package installed with pip into a
throwaway folder (nothing enters the shared venv), listed by `denas spaces` and run by `denas run`;
broken plug-ins are named in one clear error and leave the built-in spaces working."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from denas import spaces
from denas.spaces import base, plugins

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "denas-space-mlp"


def denas(*args: str, path: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(path), str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [sys.executable, "-m", "denas", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env,
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The example package pip-installed into a private folder (offline: no index, no isolation)."""
    target = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
            "--no-index", "--target", str(target), str(EXAMPLE),
        ],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (target / "denas_space_mlp-0.1.0.dist-info" / "entry_points.txt").exists()
    return target


def fake_plugin(site: Path, name: str, module_text: str, target: str) -> None:
    """An installed distribution (dist-info + module) registering ``name`` in the denas.spaces group."""
    module = f"plug_{name}"
    (site / f"{module}.py").write_text(textwrap.dedent(module_text))
    info = site / f"plug_{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: plug-{name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[denas.spaces]\n{name} = {module}:{target}\n")


BROKEN = {
    "explodes": ("raise RuntimeError('boom at import')\n", "Space", "failed to import 'plug_explodes:Space'"),
    "notaspace": ("class Space:\n    pass\n", "Space", "is not a subclass of denas.spaces.SearchSpace"),
    "halfdone": (
        """
        from denas.spaces import SearchSpace
        class Space(SearchSpace):
            def sample(self, rng):
                return {}
        """,
        "Space",
        "does not implement mutate, crossover, validate, build, example_inputs, count_params, count_flops",
    ),
    "wrongtype": (
        """
        from denas_space_mlp import MLPSpace
        class Space(MLPSpace):
            def sample(self, rng):
                return [1, 2]
        """,
        "Space",
        "fails its self-check: sample() returned list, expected a dict",
    ),
    "cnn": (
        "from denas_space_mlp import MLPSpace as Space\n",
        "Space",
        "reuses the name of a built-in space",
    ),
}


@pytest.fixture
def broken_site(tmp_path, installed) -> Path:
    """The example package beside five broken plug-ins (one of them subclasses the example)."""
    shutil.copytree(installed, tmp_path, dirs_exist_ok=True)
    for name, (text, target, _) in BROKEN.items():
        fake_plugin(tmp_path, name, text, target)
    return tmp_path


@pytest.fixture
def on_path(monkeypatch):
    """Put folders on sys.path for in-process loading; forget the plug-ins afterwards."""
    before = dict(base._REGISTRY)

    def add(*folders: Path) -> None:
        for folder in folders:
            monkeypatch.syspath_prepend(str(folder))
        importlib.invalidate_caches()
        plugins.reset()

    yield add
    base._REGISTRY.clear()
    base._REGISTRY.update(before)
    plugins.reset()


def test_installed_example_is_listed_with_its_package(installed):
    proc = denas("spaces", path=installed, timeout=300)
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("mlp "))
    assert "[plug-in from denas-space-mlp 0.1.0]" in line
    assert any(ln.startswith("cnn ") and "plug-in" not in ln for ln in proc.stdout.splitlines())
    table = denas("spaces", "mlp", path=installed, timeout=300)
    assert table.returncode == 0 and "activation" in table.stdout


def test_without_the_package_the_space_is_unknown():
    with pytest.raises(spaces.StructureError, match="unknown space 'mlp'.*denas.spaces"):
        spaces.get("mlp")


def test_plugin_space_meets_the_contract_in_process(installed, on_path):
    on_path(installed)
    space = spaces.get("mlp", {"preset": "tiny"})
    assert space.name == "mlp" and plugins.origin("mlp") == "denas-space-mlp 0.1.0"
    s = space.sample(__import__("random").Random(1))
    assert space.count_params(s) == base.param_count(space.build(s))


def test_denas_run_searches_trains_and_exports_a_plugin_space(installed, tmp_path):
    manifest = yaml.safe_load((EXAMPLE / "job.yaml").read_text())
    manifest["spec"]["search"].update(population=4, generations=1, topK=1)
    manifest["spec"]["training"].update(epochs=1, dataset={"name": "digits", "limit": 200})
    job = tmp_path / "mlp.yaml"
    job.write_text(yaml.safe_dump(manifest))
    out = tmp_path / "out"
    proc = denas("run", str(job), "--out", str(out), path=installed)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert result["domain"] == "mlp"
    assert set(result["best"][0]["structure"]) == {"depth", "widths", "activation"}
    assert json.loads((out / "status.json").read_text())["phase"] == "Succeeded"
    assert (out / "model" / "model.onnx").exists()


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_plugin_is_named_and_builtins_still_work(broken_site, on_path, name):
    on_path(broken_site)
    if name == "cnn":  # an impostor never shadows the built-in; it is reported when listing
        spaces.names()
        message = str(plugins.problems()[name])
    else:
        with pytest.raises(plugins.PluginError) as info:
            spaces.get(name)
        message = str(info.value)
    assert f"plug-in space '{name}'" in message and f"package 'plug-{name} 1.0'" in message
    assert BROKEN[name][2] in message
    assert "mlp" in spaces.names() and name not in [n for n in spaces.names() if plugins.origin(n)]
    assert spaces.get("cnn", {"preset": "digits"}).name == "cnn"  # the built-in, not the impostor


def test_cli_refuses_a_broken_plugin_before_work_and_keeps_builtins(broken_site, tmp_path):
    manifest = yaml.safe_load((EXAMPLE / "job.yaml").read_text())
    manifest["spec"]["domain"] = "wrongtype"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(manifest))
    out = tmp_path / "out"
    proc = denas("run", str(bad), "--out", str(out), path=broken_site, timeout=300)
    assert proc.returncode == 2
    assert "spec.domain: plug-in space 'wrongtype'" in proc.stderr and "plug-wrongtype 1.0" in proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()
    listing = denas("spaces", path=broken_site, timeout=300)
    assert listing.returncode == 2 and "Traceback" not in listing.stderr
    assert "mlp " in listing.stdout and "cnn " in listing.stdout
    assert "plug-in space 'explodes'" in listing.stderr
    good = denas("validate", str(ROOT / "deploy" / "samples" / "digits.yaml"), path=broken_site, timeout=300)
    assert good.returncode == 0, good.stderr
