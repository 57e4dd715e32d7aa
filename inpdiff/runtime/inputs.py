"""Inputs of `trt-localize`, streamed: files, directories walked lazily, globs, and lists of paths.

Each input becomes a Job: its path and the stem its outputs are written under. Memory does not
grow with the number of inputs: directories are listed one at a time, globs and lists are read
lazily, and the names already used are remembered only for the last few output folders (two
inputs collide only when they share a folder and a name, such as photo.jpg and photo.png).

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
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Iterable, Iterator, TextIO

from ..data.io import IMAGE_EXTS


@dataclass(frozen=True)
class Job:
    path: Path
    out_stem: Path  # OUT/sub/NAME: outputs are out_stem + ".prob.png" etc.

    def output(self, suffix: str) -> Path:
        return self.out_stem.with_name(self.out_stem.name + suffix)


def is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTS


def walk(root: Path) -> Iterator[Path]:
    """Image files below `root`, in sorted order, one directory listing in memory at a time."""
    for folder, dirs, files in os.walk(root):
        dirs.sort()
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


class _UniqueStems:
    """Adds _1, _2 ... to a stem already used in the same output folder. Folders are remembered
    most-recently-used first, a bounded number of them: inputs arrive grouped by folder."""

    def __init__(self, folders: int = 4096):
        self.used: OrderedDict[Path, dict[str, int]] = OrderedDict()
        self.folders = folders

    def __call__(self, stem: Path) -> Path:
        names = self.used.setdefault(stem.parent, {})
        self.used.move_to_end(stem.parent)
        if len(self.used) > self.folders:
            self.used.popitem(last=False)
        n = names.get(stem.name, 0)
        names[stem.name] = n + 1
        return stem if n == 0 else stem.with_name(f"{stem.name}_{n}")


def iter_jobs(args: Iterable[str], out: Path, lists: Iterable[str] = (), stdin: TextIO | None = None
              ) -> Iterator[Job]:
    """Jobs for the command-line paths, then for each list. A path that does not exist stays a job,
    so that it is reported as missing."""
    unique = _UniqueStems()
    for arg in args:
        p = Path(arg)
        if p.is_dir():
            for f in walk(p):
                yield Job(f, unique(out / f.relative_to(p).parent / f.stem))
        elif not p.exists() and glob.has_magic(arg):
            root = _fixed_prefix(arg)
            for f in glob.iglob(arg, recursive=True):
                if is_image(f) and os.path.isfile(f):
                    rel = Path(os.path.relpath(f, root)) if root else Path(f)
                    yield Job(Path(f), unique(out / mirrored(str(rel.parent)) / rel.stem))
        else:
            yield Job(p, unique(out / p.stem))
    for source in lists:
        for line in read_list(source, stdin):
            rel = mirrored(line)
            yield Job(Path(line), unique(out / rel.parent / Path(line).stem))


def _fixed_prefix(pattern: str) -> str:
    """The folders of a glob before its first wildcard: data/**/*.jpg -> data."""
    fixed = []
    for part in Path(pattern).parent.parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return str(Path(*fixed)) if fixed else ""
