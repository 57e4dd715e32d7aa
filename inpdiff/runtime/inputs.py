"""Inputs of `trt-localize`, streamed: files, directories walked lazily, globs, and lists of paths.

Each input becomes a Job: its absolute path and the stem its outputs would be written under; the output
folder (out_folder.py) turns that into a name no other file holds. Memory does not grow with the
number of inputs: directories are listed one at a time, globs and lists are read lazily. A walk
never enters OUT, nor a folder holding a `.trt-localize.json` (another run's outputs).

Where outputs go, under OUT:
- a file given on the command line: OUT/NAME.*
- a directory D: OUT/<path below D>/NAME.* (sub-folders mirrored)
- a glob: mirrored below its fixed leading folders (data/**/*.jpg: below data/)
- a list (--list FILE, or - for stdin): mirrored as written, so /data/a/x.jpg -> OUT/data/a/x.*;
  `..` parts become `__` so nothing lands outside OUT.
"""
from __future__ import annotations

import glob
import os
import sys
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Iterable, Iterator, TextIO

from ..io import IMAGE_EXTS


@dataclass(frozen=True)
class Job:
    path: Path
    out_stem: Path  # OUT/sub/NAME: outputs are out_stem + ".prob.png" etc.

    def output(self, suffix: str) -> Path:
        return self.out_stem.with_name(self.out_stem.name + suffix)


def is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTS


OUTPUT_MARK = ".trt-localize.json"  # the settings file every output folder holds
THUMBS_MARK = ".inpdiff-thumbs"      # the gallery's thumbnails folder inside OUT (gallery.py)


def walk(root: Path, out: Path | None = None) -> Iterator[Path]:
    """Image files below `root`, in sorted order, one directory listing in memory at a time; output
    folders (`out`, and any other holding OUTPUT_MARK) are skipped. `root` itself is walked even when
    it is `out` (its own outputs are told apart by name, see out_folder.py)."""
    skip = os.path.abspath(out) if out is not None else None
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if os.path.abspath(os.path.join(folder, d)) != skip
                         and not os.path.exists(os.path.join(folder, d, OUTPUT_MARK))
                         and not os.path.exists(os.path.join(folder, d, THUMBS_MARK)))
        for name in sorted(files):
            if is_image(name):
                yield Path(folder, name)


def mirrored(path: str) -> PurePath:
    """A path from a list -> the relative path its outputs mirror (never climbing out of OUT)."""
    parts = [("__" if part == ".." else part) for part in PurePath(path).parts
             if part not in (PurePath(path).anchor, ".")]
    return PurePath(*parts) if parts else PurePath(path)


def read_list(source: str, stdin: TextIO | None = None) -> Iterator[str]:
    """Paths from a list file, or from stdin for `-`: one per line; blank lines and # comments skipped."""
    f = (stdin or sys.stdin) if source == "-" else open(source, encoding="utf-8")
    try:
        for line in f:
            line = line.rstrip("\r\n")
            if line.strip() and not line.lstrip().startswith("#"):
                yield line
    finally:
        if f is not stdin and f is not sys.stdin:
            f.close()


def iter_jobs(args: Iterable[str], out: Path, lists: Iterable[str] = (), stdin: TextIO | None = None
              ) -> Iterator[Job]:
    """Jobs for the command-line paths, then for each list. A path that does not exist stays a job,
    so that it is reported as missing. Stems are candidates: two inputs may share one."""
    for arg in args:
        p = Path(arg)
        if p.is_dir():
            for f in walk(p, out):
                yield Job(_absolute(f), out / f.relative_to(p).parent / f.stem)
        elif not p.exists() and glob.has_magic(arg):
            root = _fixed_prefix(arg)
            for f in glob.iglob(arg, recursive=True):
                if is_image(f) and os.path.isfile(f):
                    rel = Path(os.path.relpath(f, root)) if root else Path(f)
                    yield Job(_absolute(f), out / mirrored(str(rel.parent)) / rel.stem)
        else:
            yield Job(_absolute(p), out / p.stem)
    for source in lists:
        for line in read_list(source, stdin):
            rel = mirrored(line)
            yield Job(_absolute(line), out / rel.parent / Path(line).stem)


def _absolute(path: str | Path) -> Path:
    """Inputs are known by their absolute path (not resolving links), so that a resume from another
    working folder, or with the same files named another way, finds what is done."""
    return Path(os.path.abspath(path))


def _fixed_prefix(pattern: str) -> str:
    """The folders of a glob before its first wildcard: data/**/*.jpg -> data."""
    fixed = []
    for part in Path(pattern).parent.parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return str(Path(*fixed)) if fixed else ""
