"""A minimal in-tree PEP 517 build backend (stdlib only), so this example installs offline with
``pip install --no-build-isolation`` on any machine, even one without setuptools/wheel.

Your own plug-in package would use setuptools, hatchling or flit as usual: what DeNAS needs is only
the ``[project.entry-points."denas.spaces"]`` table, which every backend writes into the wheel's
``entry_points.txt``. This one reads ``[project]`` from pyproject.toml and zips the package.
"""

from __future__ import annotations

import base64
import hashlib
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "denas_space_mlp"


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _dist_info() -> tuple[str, str, dict[str, str]]:
    project = _project()
    stem = f"{project['name'].replace('-', '_')}-{project['version']}"
    metadata = (
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
        f"Summary: {project.get('description', '')}\nRequires-Python: {project.get('requires-python', '')}\n"
    )
    entry_points = "".join(
        f"[{group}]\n" + "".join(f"{name} = {target}\n" for name, target in entries.items()) + "\n"
        for group, entries in project.get("entry-points", {}).items()
    )
    files = {
        "METADATA": metadata,
        "WHEEL": "Wheel-Version: 1.0\nGenerator: mlp_backend\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        "entry_points.txt": entry_points,
    }
    return stem, f"{stem}.dist-info", files


def get_requires_for_build_wheel(config_settings=None) -> list[str]:
    return []


def prepare_metadata_for_build_wheel(metadata_directory: str, config_settings=None) -> str:
    _, dist_info, files = _dist_info()
    target = Path(metadata_directory) / dist_info
    target.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (target / name).write_text(text)
    return dist_info


def build_wheel(wheel_directory: str, config_settings=None, metadata_directory=None) -> str:
    stem, dist_info, files = _dist_info()
    contents = {f"{PACKAGE}/{path.name}": path.read_bytes() for path in sorted((ROOT / PACKAGE).glob("*.py"))}
    contents.update({f"{dist_info}/{name}": text.encode() for name, text in files.items()})
    record = []
    for name, data in contents.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{dist_info}/RECORD,,")
    contents[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    filename = f"{stem}-py3-none-any.whl"
    with zipfile.ZipFile(Path(wheel_directory) / filename, "w", zipfile.ZIP_DEFLATED) as wheel:
        for name, data in contents.items():
            wheel.writestr(name, data)
    return filename
