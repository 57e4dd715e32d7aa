"""OUT/report.jsonl: one line per input, appended as results are written, and resumable.

A line is appended only after the image's outputs are in place (each written atomically), so a
line means finished. Running the same command again reads the report and skips what it lists.
After a kill or a power loss the report may end in a half-written line (or hold zeros where the
file system extended it): those lines are dropped, and the file rewritten atomically, before
anything is appended. Inputs are remembered by an 8-byte hash of their path, so resuming a run of
millions of images costs tens of megabytes, not the paths themselves.

OUT/.trt-localize.json records the settings that change results; resuming with other settings is
refused, since the report would then mix two kinds of results.
"""
from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import json
import os
from pathlib import Path
from typing import Callable, NoReturn

from ..io import atomic_write

SETTINGS_FILE = ".trt-localize.json"


class ResumeError(ValueError):
    """OUT holds results that were made with other settings."""


class DiskFull(OSError):
    """No space left on OUT: the run stops; what failed for it is redone by the next run."""


def is_disk_full(e: BaseException) -> bool:
    return isinstance(e, DiskFull) or (isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT))


def reraise(e: OSError, where: Path) -> NoReturn:
    """Raise `e` again: as a DiskFull naming `where` when the disk is full, so the run stops cleanly."""
    if is_disk_full(e):
        raise DiskFull(e.errno, f"no space left on {where}") from e
    raise e


def _differs(key: str, before, now) -> str:
    """One changed setting, briefly: a model is named by its files, not dumped."""
    if key == "model":
        return "model (another model's files)"
    if isinstance(before, dict) or isinstance(now, dict):
        return f"{key} (another calibration)" if key == "score" else f"{key} (differs)"
    return f"{key} {before!r} -> {now!r}"


def path_key(path: str | Path) -> int:
    return int.from_bytes(hashlib.blake2b(str(path).encode("utf-8", "surrogateescape"), digest_size=8).digest(),
                          "little")

# Settings recorded since a later release, with the value that runs before them worked with: their
# folders resume alike (trt-localize-cpp's out_folder.hpp has the same list).
ADDED_SETTINGS = {"flips": 1}


class Report:
    def __init__(self, out: Path, settings: dict, restart: bool = False, retry_failed: bool = False,
                 on_line: Callable[[dict], None] | None = None):
        """on_line: called with each line kept from an earlier run (the output folder learns its names)."""
        self.out = out
        self.on_line = on_line or (lambda line: None)
        self.path = out / "report.jsonl"
        self.done: set[int] = set()
        self.resumed = self.failed_before = self.detected_before = 0
        out.mkdir(parents=True, exist_ok=True)
        saved = out / SETTINGS_FILE
        if restart:
            self.path.unlink(missing_ok=True)
        elif self.path.exists() and saved.exists():
            try:
                before = json.loads(saved.read_text())
                if not isinstance(before, dict):
                    raise ValueError("not a JSON object")
            except (ValueError, UnicodeDecodeError) as e:
                raise ResumeError(f"{saved}: unreadable settings file ({e}); it records how {out}'s results were "
                                  "made: restore it, or add --restart to start over") from None
            before = {**ADDED_SETTINGS, **before}
            changed = {k: (before.get(k), v) for k, v in settings.items() if before.get(k) != v}
            if changed:
                what = ", ".join(_differs(k, a, b) for k, (a, b) in changed.items())
                raise ResumeError(f"{out} holds results made with other settings ({what}); run with the same "
                                  "settings to resume, choose another --out, or add --restart to start over")
        atomic_write(saved, lambda p: p.write_text(json.dumps(settings, indent=1)))
        if self.path.exists():
            self._load(retry_failed)
        self._file = open(self.path, "ab", buffering=0)  # unbuffered: a failed line leaves nothing to flush later

    def _load(self, retry_failed: bool) -> None:
        for _, line in self._kept_lines(retry_failed):
            self.done.add(path_key(line["path"]))
            self.on_line(line)
            self.failed_before += bool(line.get("error"))
            self.detected_before += bool(line.get("inpainted"))
        with open(self.path, "rb") as f:
            total = sum(1 for _ in f)
        self.resumed = len(self.done)
        if total != self.resumed:  # a torn, duplicate or retried line: rewrite without it, streaming

            def rewrite(p: Path) -> None:
                with open(p, "wb") as f:
                    f.writelines(raw for raw, _ in self._kept_lines(retry_failed))

            atomic_write(self.path, rewrite)

    def _kept_lines(self, retry_failed: bool):
        """(raw, parsed) for each complete, first-of-its-path line of the report on disk."""
        seen: set[int] = set()
        with open(self.path, "rb") as f:
            for raw in f:
                try:
                    line = json.loads(raw)
                    key = path_key(line["path"])
                except (ValueError, TypeError, KeyError):
                    continue
                if not raw.endswith(b"\n") or key in seen or (retry_failed and line.get("error")):
                    continue
                seen.add(key)
                yield raw, line

    def is_done(self, path: str | Path) -> bool:
        return path_key(path) in self.done

    def add(self, line: dict) -> bool:
        """Append one line, unless the path was already reported (the same file given twice)."""
        key = path_key(line["path"])
        if key in self.done:
            return False
        data = memoryview((json.dumps(line) + "\n").encode())
        start = self._file.seek(0, os.SEEK_END)
        try:
            while data:  # a write may take only part of the line (a disk filling up)
                data = data[self._file.write(data):]
        except OSError as e:
            # Cut the part that got written, so the report holds whole lines only; should that fail too,
            # the next run drops the torn line and redoes this input.
            with contextlib.suppress(OSError):
                self._file.truncate(start)
            reraise(e, self.out)
        self.done.add(key)
        return True

    def close(self) -> None:
        try:
            os.fsync(self._file.fileno())
        except OSError:
            pass  # a full disk: what did not reach the disk is redone by the next run
        finally:
            try:
                self._file.close()
            except OSError:
                pass

    def write_summary(self) -> Path:
        """OUT/summary.csv from the whole report (this run and the ones it resumed)."""
        target = self.out / "summary.csv"

        def write(p: Path) -> None:
            with open(self.path, encoding="utf-8") as src, open(p, "w", newline="", encoding="utf-8") as dst:
                w = csv.writer(dst)
                w.writerow(["path", "score", "inpainted", "regions", "largest_region_px", "error"])
                for raw in src:
                    r = json.loads(raw)
                    regions = r.get("regions") or []
                    w.writerow([r["path"], r.get("score"), r.get("inpainted"), len(regions),
                                max((g["area"] for g in regions), default=0), r.get("error", "")])

        atomic_write(target, write)
        return target
