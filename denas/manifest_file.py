"""Reading a manifest file the way a hurried user writes one: every mistake is one line, file:line:col.

`read_yaml_documents(path)` returns the YAML documents of a file or raises `ManifestFileError`
whose message names the file position and the fix:

- a missing file, a directory, an unreadable file;
- bytes that are not UTF-8 (the API server only takes UTF-8 JSON/YAML);
- YAML syntax errors, with a hint for the common causes (a tab in the indentation);
- duplicate keys in one mapping: PyYAML silently keeps the last one, the API server's strict
  decoding (`kubectl apply`, the default since 1.27) rejects the manifest; so do we, naming the key
  and both lines, because the first value the user wrote is silently lost otherwise.

Torch-free: the operator image and `denas validate` read manifests with it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from denas.job import JobValidationError


class ManifestFileError(JobValidationError):
    """A manifest file that cannot be read or parsed; str() is the one-line message."""

    def __init__(self, message: str):
        super().__init__("<file>", [message])
        self.message = message

    def __str__(self) -> str:
        return self.message


class MissingManifestError(ManifestFileError, FileNotFoundError):
    """The manifest path does not exist (also a FileNotFoundError, for callers that catch that)."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys in a mapping (merge keys `<<` may still override)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, yaml.Node] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: the base class reports it with its position
                    continue
                if first is not None:
                    raise _DuplicateKey(key, first, key_node)
                seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, first: yaml.Node, second: yaml.Node):
        self.key, self.first, self.second = key, first, second


def _position(path: Path, mark: Any) -> str:
    return f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)


def read_text(path: str | Path) -> str:
    """The file's text, or a ManifestFileError saying why it cannot be a manifest."""
    path = Path(path)
    hint = "pass the path of a DeNASJob manifest file (YAML), e.g. deploy/samples/digits.yaml"
    if not path.exists():
        raise MissingManifestError(f"{path}: no such file; {hint}")
    if path.is_dir():
        raise ManifestFileError(f"{path}: is a directory, not a file; {hint}")
    try:
        data = path.read_bytes()
    except PermissionError:
        raise ManifestFileError(
            f"{path}: permission denied; make the file readable (chmod u+r {path})"
        ) from None
    except OSError as exc:
        raise ManifestFileError(f"{path}: cannot read ({exc.strerror or exc}); {hint}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ManifestFileError(
            f"{path}:{line}:{column}: not UTF-8 text (byte 0x{data[exc.start]:02x}); "
            "manifests are UTF-8: re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        ) from None


def parse_documents(text: str, path: str | Path) -> list[Any]:
    """Every YAML document of ``text`` (from ``path``, for messages); strict about duplicate keys."""
    path = Path(path)
    try:
        return list(yaml.load_all(text, Loader=_StrictLoader))  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as exc:
        first, second = exc.first.start_mark.line + 1, exc.second.start_mark.line + 1
        raise ManifestFileError(
            f"{_position(path, exc.second.start_mark)}: duplicate key {exc.key!r} (first on line {first}, "
            f"again on line {second}); the API server's strict decoding rejects it: keep one of them"
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = " ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
        lines = text.splitlines()
        where = lines[mark.line] if mark is not None and mark.line < len(lines) else ""
        if "unhashable" in problem:
            fix = "a key must be a plain name (field: value), not a list or mapping"
        elif "\t" in problem or "\t" in where[: (mark.column + 1) if mark is not None else 0]:
            fix = "YAML does not allow tabs for indentation: indent with spaces"
        else:
            fix = "fix the YAML syntax there (indentation, a missing ':' or an unclosed bracket or quote)"
        raise ManifestFileError(f"{_position(path, mark)}: {problem}; {fix}") from None
    except yaml.YAMLError as exc:  # pragma: no cover - PyYAML marks every parse error
        raise ManifestFileError(f"{path}: invalid YAML ({exc})") from None


def read_yaml_documents(path: str | Path) -> list[Any]:
    """The non-empty YAML documents of the file at ``path``."""
    return [d for d in parse_documents(read_text(path), path) if d is not None]
