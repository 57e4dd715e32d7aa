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

Memory: one 8-byte key per input (as for the report), not the names themselves.
"""
from __future__ import annotations

import fcntl
import itertools
import json
import os
from pathlib import Path

from .inputs import Job
from .report import path_key, reraise

OUTPUT_SUFFIXES = (".prob.png", ".mask.png", ".uncertainty.png", ".overlay.jpg")
LOCK_FILE = ".trt-localize.lock"
CLAIMS_FILE = ".trt-localize.claims"


class BusyError(RuntimeError):
    """Another run holds OUT."""


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
        self._lock = open(out / LOCK_FILE, "a+")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.seek(0)
            pid = self._lock.read().strip() or "unknown"
            self._lock.close()
            raise BusyError(f"{out}: another trt-localize (PID {pid}) is writing to this folder; wait for it "
                            "to finish or choose another --out") from None
        self._lock.seek(0)
        self._lock.truncate()
        self._lock.write(str(os.getpid()))
        self._lock.flush()
        self.stems: set[int] = set()           # every stem of this OUT: claimed or reported
        self.resumed: dict[int, Path] = {}     # unfinished input's key -> its stem, from the journal
        self._journal = None

    def load_claims(self, is_done) -> None:
        """Read the claims journal (after the report, so that finished inputs are not kept in memory)."""
        journal = self.out / CLAIMS_FILE
        if journal.exists():
            whole = 0  # bytes up to the end of the last complete line
            with open(journal, "rb") as f:
                for raw in f:
                    whole += len(raw) if raw.endswith(b"\n") else 0
                    try:
                        c = json.loads(raw)
                        stem = self.out / c["stem"]  # journaled relative to OUT: any working folder
                        self.stems.add(_key(stem))
                        if not is_done(c["path"]):
                            self.resumed[path_key(c["path"])] = stem
                    except (ValueError, TypeError, KeyError):
                        continue  # a line torn by a kill: its outputs were not written yet
            if whole != journal.stat().st_size:  # cut the torn tail, or this run's first claim would join it
                os.truncate(journal, whole)
        self._journal = open(journal, "a", encoding="utf-8")

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
            try:
                rel = os.path.relpath(stem, self.out)
                self._journal.write(json.dumps({"path": str(job.path), "stem": rel}) + "\n")
                self._journal.flush()
            except OSError as e:
                reraise(e, self.out)
        self.stems.add(_key(stem))
        return Job(job.path, stem)

    def close(self) -> None:
        for f in (self._journal, self._lock):
            try:
                if f is not None:
                    f.close()
            except OSError:
                pass  # a full disk: the journal's last line may be torn, which loading skips
