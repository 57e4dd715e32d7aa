"""The output folder of `trt-localize`: one writer at a time, and output names that never land on a
file this tool did not write.

- **Lock**: `OUT/.trt-localize.lock` is held with `flock` for the whole run; a second run on the same
  OUT is refused with the first one's PID. The kernel drops the lock when its process dies, so a
  killed run leaves no stale lock.
- **Names**: an input's outputs are `STEM.prob.png`, `STEM.mask.png`, `STEM.overlay.jpg`. The stem is
  the input's name without its extension, unless any of those files already exists or another input
  of this OUT has the stem; then `NAME.EXT`, then `NAME.EXT_1`, `_2`... So an output never replaces
  an input, a user's file, or another input's outputs, within a run or across resumed runs.
- **Claims**: the chosen stem is appended to `OUT/.trt-localize.claims` (flushed) before anything is
  written under it, so after a kill the resumed run knows which half-written files are its own and
  gives the input the same stem. Report lines name their outputs too; both tell an input walk which
  files are this OUT's outputs, so they are never read back as photos.
- **Crash notes**: a file can crash a library outright (a signal, not an exception), and would then end
  every resumed run. The photos in flight are kept in the lock file (after the PID line, rewritten as
  photos come and go), and `faulthandler` appends its report of a fatal signal there. The next run
  turns what a crash left into notes in the claims journal, `{"crashed_on", "alone", "signal"}` as
  `trt-localize-cpp` writes them: noted photos are worked one at a time, and one the run died on alone
  gets an error line instead (`--restart` tries it again). A kill (SIGKILL) leaves no note.

Memory: one 8-byte key per input (as for the report), not the names themselves.
"""
from __future__ import annotations

import faulthandler
import fcntl
import itertools
import json
import os
import re
import signal
from pathlib import Path

from .inputs import Job
from .report import path_key, reraise

OUTPUT_SUFFIXES = (".prob.png", ".mask.png", ".uncertainty.png", ".overlay.jpg")
LOCK_FILE = ".trt-localize.lock"
CLAIMS_FILE = ".trt-localize.claims"


class BusyError(RuntimeError):
    """Another run holds OUT."""


# faulthandler's names of the signals it reports
FATAL_SIGNALS = {"Segmentation fault": signal.SIGSEGV, "Bus error": signal.SIGBUS, "Aborted": signal.SIGABRT,
                 "Floating-point exception": signal.SIGFPE, "Floating point exception": signal.SIGFPE,
                 "Illegal instruction": signal.SIGILL}


def _crash_left(lock_text: str) -> tuple[list[str], int, str] | None:
    """(photos in flight, signal, faulthandler's report) where a run died of a fatal signal, from its lock
    file: the PID line, the JSON list of photos in flight, then faulthandler's report (after a crash only)."""
    lines = lock_text.split("\n", 2)
    fatal = re.search(r"Fatal Python error: (.+?)\n", lines[2] if len(lines) > 2 else "")
    if not fatal:
        return None
    try:
        paths = json.loads(lines[1])
    except ValueError:
        return None
    report = lines[2][fatal.start():].strip()
    return [p for p in paths if isinstance(p, str)], int(FATAL_SIGNALS.get(fatal.group(1).strip(), 0)), report


def _key(path: str | Path) -> int:
    return path_key(os.path.abspath(path))


def stem_of(output: str | Path) -> str | None:
    """STEM of an output file's path, or None for a name no output has."""
    name = str(output)
    return next((name[:-len(s)] for s in OUTPUT_SUFFIXES if name.endswith(s)), None)


class OutFolder:
    def __init__(self, out: Path):
        self.out = out
        if out.exists() and not out.is_dir():
            raise NotADirectoryError(f"{out}: is a file, not a folder (-o names the output folder)")
        out.mkdir(parents=True, exist_ok=True)
        self._lock = os.open(out / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
        previous = os.pread(self._lock, 1 << 20, 0).decode(errors="replace")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock)
            pid = previous.split("\n", 1)[0].strip() or "unknown"
            raise BusyError(f"{out}: another trt-localize (PID {pid}) is writing to this folder; wait for it "
                            "to finish or choose another --out") from None
        self._crashed = _crash_left(previous)
        self._head = 4096  # bytes of the PID line and the list in flight (in_flight), grown where needed
        os.ftruncate(self._lock, 0)  # what the last run left, read above: before faulthandler can append
        self.in_flight([])
        self._fault_log = None
        self.stems: set[int] = set()           # every stem of this OUT: claimed or reported
        self.resumed: dict[int, Path] = {}     # unfinished input's key -> its stem, from the journal
        self.crashes: dict[str, tuple[bool, int]] = {}  # crash-noted photo -> (alone, signal)
        self._journal = None

    def watch_crashes(self) -> None:
        """From now on a fatal signal leaves faulthandler's report after the photos in flight (O_APPEND).
        Process-wide, so the command calls it, not a library user of this class."""
        self._fault_log = open(self.out / LOCK_FILE, "a")
        faulthandler.enable(self._fault_log)

    def in_flight(self, paths: list[str]) -> None:
        """The photos now in the run's hands, for a crash to leave behind (the pipeline calls this as they
        come and go, one call at a time). The PID line and the list are padded to a fixed length and
        written over in place, never cut: faulthandler appends its report after them from a signal
        handler while other threads go on, and a list cut to length by one of them then cut the report
        off too (seen: a crash with photos in flight that left no notes). A list that does not fit grows
        the padded length; only a crash at that very write could garble the file. A full disk costs the
        notes, not the run."""
        text = f"{os.getpid()}\n{json.dumps(paths)}".encode()
        self._head = max(self._head, len(text) + 1)
        try:
            os.pwrite(self._lock, text.ljust(self._head - 1) + b"\n", 0)
        except OSError:
            pass

    def load_claims(self, is_done, restart: bool = False) -> None:
        """Read the claims journal (after the report, so that finished inputs are not kept in memory), and
        note there what a crash of the last run left; `restart` voids every crash note."""
        journal = self.out / CLAIMS_FILE
        if journal.exists():
            whole = 0  # bytes up to the end of the last complete line
            with open(journal, "rb") as f:
                for raw in f:
                    whole += len(raw) if raw.endswith(b"\n") else 0
                    try:
                        c = json.loads(raw)
                        if "restarted" in c:
                            self.crashes.clear()
                        if "crashed_on" in c:
                            self._note(c["crashed_on"], c.get("alone") is True, int(c.get("signal") or 0))
                            continue
                        stem = self.out / c["stem"]  # journaled relative to OUT: any working folder
                        self.stems.add(_key(stem))
                        if not is_done(c["path"]):
                            self.resumed[path_key(c["path"])] = stem
                    except (ValueError, TypeError, KeyError):
                        continue  # a line torn by a kill: its outputs were not written yet
            if whole != journal.stat().st_size:  # cut the torn tail, or this run's first claim would join it
                os.truncate(journal, whole)
        self._journal = open(journal, "a", encoding="utf-8")
        if restart:
            self.crashes.clear()
            self._write_journal([{"restarted": True}])
            return
        paths, sig, _ = self._crashed or ([], 0, "")
        for p in paths:
            self._note(p, len(paths) == 1, sig)
        self._write_journal([{"crashed_on": p, "alone": len(paths) == 1, "signal": sig} for p in paths])

    def _note(self, path: str, alone: bool, sig: int) -> None:
        """A crash with `path` in flight: once crashed on alone, it stays so (until a --restart)."""
        self.crashes[path] = (alone or self.crashes.get(path, (False, 0))[0], sig)

    def last_crash(self) -> str | None:
        """What to tell the user of a crash the last run died of (its notes are in the journal by now)."""
        if not self._crashed:
            return None
        paths, sig, report = self._crashed
        return (f"the last run on {self.out} crashed (signal {sig}) with {len(paths)} photo(s) in flight; "
                f"{'that photo is' if len(paths) == 1 else 'they are'} "
                f"{'reported, not tried again' if len(paths) == 1 else 'worked one at a time'} "
                f"(--restart tries every file again). Its report:\n{report}")

    def refuse(self, path: Path) -> str | None:
        """The error line for a photo a run crashed on while working it alone, None for any other."""
        alone, sig = self.crashes.get(str(path), (False, 0))
        if not alone:
            return None
        # One note format for both commands, which do not say whose run it was.
        return (f"{path}: an earlier run crashed (signal {sig}) while working on this file alone (damaged or "
                "hostile data?); it is not tried again (--restart tries every file again)")

    def alone(self, path: Path) -> bool:
        """Whether a run crashed with this photo in flight beside others: it is worked alone."""
        return str(path) in self.crashes

    def _write_journal(self, lines: list[dict]) -> None:
        if not lines:
            return
        try:
            self._journal.write("".join(json.dumps(line) + "\n" for line in lines))
            self._journal.flush()
        except OSError as e:
            reraise(e, self.out)

    def learn(self, line: dict) -> None:
        """A report line's outputs belong to this OUT (lines from before outputs were named have none)."""
        for output in (line.get("outputs") or {}).values():
            stem = stem_of(output)
            if stem:
                self.stems.add(_key(stem))

    def is_output(self, path: str | Path) -> bool:
        stem = stem_of(path)
        return stem is not None and _key(stem) in self.stems

    def _free(self, stem: Path) -> bool:
        return _key(stem) not in self.stems and not any(os.path.lexists(f"{stem}{s}") for s in OUTPUT_SUFFIXES)

    def claim(self, job: Job) -> Job:
        """The job with a stem of its own (the same one it had before a kill), journaled."""
        stem = self.resumed.get(path_key(job.path))
        if stem is None:
            base = job.out_stem
            named = base.with_name(base.name + job.path.suffix)  # NAME.EXT, then NAME.EXT_1, _2...
            tries = itertools.chain([base, named], (named.with_name(f"{named.name}_{n}") for n in itertools.count(1)))
            stem = next(c for c in tries if self._free(c))
            self._write_journal([{"path": str(job.path), "stem": os.path.relpath(stem, self.out)}])
        self.stems.add(_key(stem))
        return Job(job.path, stem)

    def close(self) -> None:
        """A clean end, stopped or not: no photo in flight is left to note."""
        if self._fault_log is not None:
            faulthandler.disable()
        self.in_flight([])
        for f in (self._journal, self._fault_log):
            try:
                if f is not None:
                    f.close()
            except OSError:
                pass  # a full disk: the journal's last line may be torn, which loading skips
        os.close(self._lock)
