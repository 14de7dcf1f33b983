"""docs/: the generated DeNASJob reference is current, and the hand-written pages cover what the
code does (every condition reason the operator sets, every metric it exports, every path they cite)."""

from __future__ import annotations

import ast
import importlib.util
import re
import subprocess
import sys

import yaml
from deploy_support import ROOT, exported_series

DOCS = ROOT / "docs"
OPERATOR = ROOT / "operator" / "denas_operator"


def _gen_module():
    spec = importlib.util.spec_from_file_location("gen_crd_docs", ROOT / "scripts" / "gen_crd_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reference_is_up_to_date():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_crd_docs.py"), "--check"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


def test_reference_check_fails_on_drift(tmp_path, monkeypatch, capsys):
    gen = _gen_module()
    target = tmp_path / "docs" / "denasjob-reference.md"
    monkeypatch.setattr(gen, "ROOT", tmp_path)
    monkeypatch.setattr(gen, "TARGET", target)
    source = tmp_path / "denas" / "crd" / gen.SOURCE.name
    source.parent.mkdir(parents=True)
    source.write_text(gen.SOURCE.read_text())
    monkeypatch.setattr(gen, "SOURCE", source)
    monkeypatch.setattr(gen, "PAGES", ((source, target),))
    assert gen.main(["--check"]) == 1  # no page yet
    assert gen.main([]) == 0 and gen.main(["--check"]) == 0
    source.write_text(
        source.read_text().replace("Candidates per generation.", "Candidates in each generation.")
    )
    assert gen.main(["--check"]) == 1
    assert "out of date" in capsys.readouterr().err


def test_reference_documents_every_field_with_its_default_and_bounds():
    gen = _gen_module()
    crd = yaml.safe_load(gen.SOURCE.read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    page = (DOCS / "denasjob-reference.md").read_text()
    for section in ("spec", "status"):
        for path, node in gen.objects(schema["properties"][section], section):
            heading = f"### `{path}`"
            assert heading in page, heading
            table = page.split(heading, 1)[1].split("\n### ", 1)[0]
            for name, child in node["properties"].items():
                rows = [line.split("|") for line in table.splitlines() if line.startswith("| ")]
                row = next(("|".join(cells) for cells in rows if f"`{name}`" in cells[1]), None)
                assert row, f"{path}.{name} missing"
                if "default" in child:
                    assert gen._json(child["default"]) in row, f"{path}.{name}: default"
                for bound in ("minimum", "maximum"):
                    if bound in child:
                        assert str(child[bound]) in row, f"{path}.{name}: {bound}"
                for value in child.get("enum", []):
                    assert f"`{value}`" in row, f"{path}.{name}: enum {value}"
    for column in crd["spec"]["versions"][0]["additionalPrinterColumns"]:
        assert column["jsonPath"] in page


# ----- troubleshooting: every reason the operator can set ----------------------------------------


def condition_reasons() -> set[str]:
    """String-literal reasons passed to the operator's condition setters or returned as blockers."""
    positions = {"cond": 2, "unset": 1, "_fail": 1, "set_condition": 3}
    reasons: set[str] = set()
    for path in OPERATOR.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "attr", getattr(node.func, "id", None))
                index = positions.get(name)
                if index is not None and len(node.args) > index:
                    arg = node.args[index]
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                        reasons.add(arg.value)
            # pod_blocker returns (reason, message) tuples
            if isinstance(node, ast.Return) and isinstance(node.value, ast.Tuple) and node.value.elts:
                first = node.value.elts[0]
                if (
                    isinstance(first, ast.Constant)
                    and isinstance(first.value, str)
                    and re.fullmatch(r"[A-Z]\w+", first.value)
                ):
                    reasons.add(first.value)
    from denas_operator import podstate

    reasons |= set(podstate.CONFIG_ERRORS)  # passed through from the kubelet as the reason
    return reasons


def test_troubleshooting_covers_every_condition_reason():
    reasons = condition_reasons()
    assert {"InvalidSpec", "ImagePullBackOff", "Unschedulable", "KubeflowNotInstalled"} <= reasons
    page = (DOCS / "troubleshooting.md").read_text()
    missing = sorted(r for r in reasons if f"`{r}`" not in page)
    assert not missing, f"docs/troubleshooting.md does not explain {missing}"


# ----- metrics reference -------------------------------------------------------------------------


def test_metrics_reference_lists_every_exported_metric():
    page = (DOCS / "metrics.md").read_text()
    documented = set(re.findall(r"`(denas_\w+)`", page))
    for series in exported_series():
        base = re.sub(r"_(bucket|sum|count)$", "", series)
        assert series in documented or base in documented, f"docs/metrics.md does not list {series}"


# ----- paths the pages cite exist ----------------------------------------------------------------


def test_paths_cited_in_docs_exist():
    cited = set()
    for page in [
        *DOCS.glob("*.md"),
        ROOT / "charts" / "denas-operator" / "README.md",
        ROOT / "gitops" / "README.md",
    ]:
        cited |= set(
            re.findall(
                r"\b((?:deploy|gitops|charts|images|dashboards|docs|scripts)/[\w./-]*\w)", page.read_text()
            )
        )
    cited = {c for c in cited if "<" not in c}
    missing = sorted(c for c in cited if not (ROOT / c).exists())
    assert not missing, f"docs cite paths that do not exist: {missing}"
