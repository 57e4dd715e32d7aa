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

import csv
import hashlib
import json
import os
from pathlib import Path

from ..data.io import atomic_write

SETTINGS_FILE = ".trt-localize.json"


class ResumeError(ValueError):
    """OUT holds results that were made with other settings."""


def path_key(path: str | Path) -> int:
    return int.from_bytes(hashlib.blake2b(str(path).encode("utf-8", "surrogateescape"), digest_size=8).digest(),
                          "little")


class Report:
    def __init__(self, out: Path, settings: dict, restart: bool = False, retry_failed: bool = False):
        self.out = out
        self.path = out / "report.jsonl"
        self.done: set[int] = set()
        self.resumed = self.failed_before = self.detected_before = 0
        out.mkdir(parents=True, exist_ok=True)
        saved = out / SETTINGS_FILE
        if restart:
            self.path.unlink(missing_ok=True)
        elif self.path.exists() and saved.exists():
            before = json.loads(saved.read_text())
            changed = {k: (before.get(k), v) for k, v in settings.items() if before.get(k) != v}
            if changed:
                what = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items())
                raise ResumeError(f"{out} holds results made with other settings ({what}); run with the same "
                                  "settings to resume, choose another --out, or add --restart to start over")
        atomic_write(saved, lambda p: p.write_text(json.dumps(settings, indent=1)))
        if self.path.exists():
            self._load(retry_failed)
        self._file = open(self.path, "a", encoding="utf-8")

    def _load(self, retry_failed: bool) -> None:
        for _, line in self._kept_lines(retry_failed):
            self.done.add(path_key(line["path"]))
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
        self.done.add(key)
        self._file.write(json.dumps(line) + "\n")
        self._file.flush()
        return True

    def close(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()

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
