"""Why a search or training process failed, in the words of the process itself.

torchrun wraps a child's failure in its own traceback and a "Root Cause ... error_file: <N/A>"
box that says nothing about the cause; the cause is the child's last error line (a Python
exception or a `denas ...: error:` message) earlier in the same log. These functions read a
process log and return that line plus the log's last meaningful lines, wrapper text removed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# glog-style lines of torch.distributed.elastic ("E1204 05:24:52.825000 8809 torch/...").
_GLOG = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+\s")
_RANK_PREFIX = re.compile(r"^\[(?:default)?rank\d+\]:\s?")
_ERROR_LINE = re.compile(
    r"^(?:[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Failure)\b.*"  # SomeError: message
    r"|[\w .-]+: error: .+"  # argparse / `denas train: error: ...`
    r"|(?:Error|error|FAILED|Killed)\b.+)"
)
# Causes that only say "a peer went away": a failing process's partners report these.
_PEER_FAILURE = re.compile(
    r"Connection (?:reset|closed|refused)|DistNetworkError|RendezvousClosed|Broken pipe|"
    r"SIGTERM|Signals\.SIGTERM|ProcessGroup.*(?:abort|timeout)|recvValue|peer",
    re.IGNORECASE,
)


@dataclass
class Failure:
    process: str  # e.g. "train-1", "search-0"
    exit_code: int | None
    cause: str  # the process's own last error line
    tail: list[str]  # the log's last lines, torchrun's wrapper removed
    rank: int | None = None

    @property
    def from_peer(self) -> bool:
        """True when the cause only says that another process failed first."""
        return bool(_PEER_FAILURE.search(self.cause)) or self.exit_code in (-15, 143)


def clean_lines(text: str) -> list[str]:
    """The last invocation's lines with torchrun's wrapper traceback, box and glog lines removed."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("$ ")]
    if starts:
        lines = lines[starts[-1] + 1 :]
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = _RANK_PREFIX.sub("", lines[i])
        if line.startswith("Traceback (most recent call last):") and _is_torchrun_wrapper(lines, i):
            break  # torchrun's own traceback and Root Cause box close the log
        if not _GLOG.match(line):
            out.append(line)
        i += 1
    while out and not out[-1].strip():
        out.pop()
    return out


def _is_torchrun_wrapper(lines: list[str], start: int) -> bool:
    for line in lines[start + 1 : start + 60]:
        if not line.startswith((" ", "\t")):
            return "ChildFailedError" in line or "elastic" in line and "Error" in line
    return False


def root_cause(lines: list[str]) -> str:
    """The last error line of the process's own output ('' when there is none)."""
    for line in reversed(lines):
        text = line.strip()
        if text and not line.startswith((" ", "\t")) and _ERROR_LINE.match(text):
            return text
    return ""


def torchrun_rank(text: str) -> int | None:
    """The global rank torchrun's Root Cause box names (the failing process of that node)."""
    match = re.search(r"^\s*rank\s*:\s*(\d+)", text, re.MULTILINE)
    return int(match.group(1)) if match else None


def read_failure(log: Path, process: str, exit_code: int | None, tail: int = 12) -> Failure:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        text = ""
    lines = clean_lines(text)
    cause = root_cause(lines) or (lines[-1].strip() if lines else f"no output (see {log})")
    rank = torchrun_rank(text)
    if rank is None and process.startswith("search-"):
        rank = int(process.rsplit("-", 1)[1])
    return Failure(process, exit_code, cause, lines[-tail:], rank)


def first_failure(failures: list[Failure]) -> Failure:
    """The failure to show: one with its own cause before one that only reports a failed peer."""
    own = [f for f in failures if not f.from_peer]
    return (own or failures)[0]
