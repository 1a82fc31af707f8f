"""Say which training process died and how, instead of torchrun's ChildFailedError traceback.

When a rank dies, torchrun's agent stops the others and `accelerate launch` ends with a Python
traceback of its own frames followed by a failure summary (rank, host, exit code, signal). The
relay below passes the launcher's stderr through unchanged, except that traceback, which it keeps
to turn into one line a user can act on. It also notes each rank's own "lost contact" line, so a
rank that stopped because its peers went away is not reported as failing for a reason of its own.
"""

from __future__ import annotations

import re
import signal
import sys
import threading
from dataclasses import dataclass

from ..errors import INTERRUPTED, LOST_CONTACT

CHILD_FAILED = "ChildFailedError"
_ENTRY = re.compile(r"^\[\d+\]:\s*$")
_FIELD = re.compile(r"^\s+(\w+)\s*:\s*(.*)$")
_SHOWN_PART_MAX = 4096  # of a line already passed on, kept to match _LOST (its line is ~200 characters)
_LOST = re.compile(r"orpo-dist: rank (\S+) " + re.escape(LOST_CONTACT) + r" \((.*)\); stopping")
# What the processes print while Ctrl-C stops them: torchrun's shutdown warnings, each rank's own
# "interrupted" line, peers losing each other, and the launchers' KeyboardInterrupt/SignalException
# tracebacks. After a Ctrl-C the launcher says it once, so these are held back.
_INTERRUPT_NOISE = re.compile(r"death signal, shutting down workers|closing signal SIG|^orpo-dist train: "
                              + re.escape(INTERRUPTED) + "|" + re.escape(LOST_CONTACT))
_INTERRUPT_EXCEPTIONS = ("KeyboardInterrupt", "SignalException")

NOBODY_DIED = ("No process on this machine died: a process on another machine died or stopped answering, or the "
               "network between the machines went down (ddp_timeout, in seconds, bounds how long a rank waits)")

# What a signal that nobody sent on purpose usually means.
SIGNAL_HINTS = {
    "SIGKILL": "killed from outside, most often by the kernel's out-of-memory killer (`dmesg | grep -i oom` "
               "tells); lower per_device_train_batch_size or max_length, or pick a ZeRO strategy with offload",
    "SIGSEGV": "a crash in native code (a CUDA/driver or library fault)",
    "SIGBUS": "a memory fault, often a full /dev/shm or a file truncated under an mmap",
    "SIGABRT": "an abort in native code (look for a C++ error above)",
    "SIGTERM": "asked to stop (by a scheduler, a timeout or a user)",
}


@dataclass
class RankFailure:
    rank: str
    local_rank: str
    host: str
    exitcode: int
    pid: str

    def describe(self, lost_contact: dict[str, str] | None = None) -> str:
        where = f"rank {self.rank} (local rank {self.local_rank} on {self.host}, pid {self.pid})"
        if self.exitcode > 0 and self.rank in (lost_contact or {}):
            return f"{where} {LOST_CONTACT} ({lost_contact[self.rank]})"
        if self.exitcode < 0:
            try:
                name = signal.Signals(-self.exitcode).name
            except ValueError:
                name = f"signal {-self.exitcode}"
            hint = SIGNAL_HINTS.get(name)
            return f"{where} was killed by {name}" + (f": {hint}" if hint else "")
        return f"{where} exited with status {self.exitcode} (its own error is printed above)"


def parse_failures(summary: str) -> list[RankFailure]:
    """The ranks in torchrun's failure summary, root cause first."""
    entries, current = [], None
    for line in summary.splitlines():
        if _ENTRY.match(line):
            current = {}
            entries.append(current)
            continue
        field = _FIELD.match(line)
        if current is not None and field:
            current[field.group(1)] = field.group(2).strip()
    failures = []
    for e in entries:
        rank = re.match(r"(\S+)(?: \(local_rank: (\S+)\))?", e.get("rank", "?"))
        code = re.match(r"(-?\d+)(?: \(pid: (\d+)\))?", e.get("exitcode", ""))
        if not code:
            continue
        failures.append(RankFailure(rank.group(1), rank.group(2) or "?", e.get("host", "?"),
                                    int(code.group(1)), code.group(2) or "?"))
    root = summary.find("Root Cause")
    if root >= 0 and failures:  # torchrun lists other failures first, the root cause last
        failures.insert(0, failures.pop())
    return failures


class StderrRelay:
    """Copy a child's stderr to ours as it comes, holding back torchrun's ChildFailedError
    traceback (kept in `failure_summary`), and, once `interrupted` is set (Ctrl-C), what the
    processes print while they stop."""

    def __init__(self, stream, out=None):
        self._stream, self._out = stream, out or sys.stderr
        self.interrupted = False
        self._held: list[str] = []
        self._swallowing = False
        self.failure_summary = ""
        self.lost_contact: dict[str, str] = {}  # rank -> the collective's error, from the rank's own line
        self._shown_part = ""  # the start of the current line, already passed on (a progress bar, or
        # a line that arrived in two reads): read again with the rest of the line
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _emit(self, text: str) -> None:
        self._out.write(text)
        self._out.flush()

    def _run(self) -> None:
        import codecs
        import os

        decoder, pending = codecs.getincrementaldecoder("utf-8")("replace"), ""
        fd = self._stream.fileno()
        while chunk := os.read(fd, 65536):
            pending += decoder.decode(chunk)
            *lines, pending = pending.split("\n")
            for line in lines:
                self._line(line + "\n")
            # A progress bar redraws with \r and no newline: pass it on now, not at the next line.
            if pending and not (self._held or self._swallowing or self.interrupted) \
                    and not "Traceback".startswith(pending[:9]):
                self._emit(pending)
                # A redraw replaces what came before its \r; bounded, as a bar may redraw for hours.
                self._shown_part = (self._shown_part + pending).rpartition("\r")[2][-_SHOWN_PART_MAX:]
                pending = ""
        if pending:
            self._line(pending)
        if self._held:
            self._emit("".join(self._held))

    def _line(self, line: str) -> None:
        whole, self._shown_part = self._shown_part + line, ""
        if lost := _LOST.search(whole):
            self.lost_contact[lost.group(1)] = lost.group(2)
        if "\r" in line and not (self._held or self._swallowing):
            # a progress bar's last redraw, then whatever came after it on the same line
            head, _, line = line.rpartition("\r")
            self._emit(head + "\r")
        if self._swallowing:
            self.failure_summary += line
        elif self._held:
            self._held.append(line)
            if not line.startswith((" ", "\t")):  # the exception line ends a traceback
                if CHILD_FAILED in line:
                    self._swallowing, self.failure_summary = True, "".join(self._held)
                elif not (self.interrupted and any(e in line for e in _INTERRUPT_EXCEPTIONS)):
                    self._emit("".join(self._held))
                self._held = []
        elif line.startswith("Traceback (most recent call last):"):
            self._held = [line]
        elif not (self.interrupted and _INTERRUPT_NOISE.search(line)):
            self._emit(line)

    def wait(self) -> None:
        self._thread.join()


def failure_message(code: int, summary: str, lost_contact: dict[str, str] | None = None) -> str:
    """One paragraph on how the training processes ended (code: the launcher's exit status;
    lost_contact: StderrRelay.lost_contact)."""
    failures = parse_failures(summary)
    if not failures:
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
            hint = SIGNAL_HINTS.get(name)
            return f"the launcher was killed by {name}" + (f": {hint}" if hint else "")
        return f"training exited with status {code} (its own error is printed above)"
    first, others = failures[0], failures[1:]
    text = first.describe(lost_contact)
    if others:
        text += "; also " + "; ".join(f.describe().split(":")[0] for f in others)
    if lost_contact and all(f.exitcode > 0 and f.rank in lost_contact for f in failures):
        return text + ". " + NOBODY_DIED
    return text + ". The other processes were stopped"
