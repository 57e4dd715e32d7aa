"""Fault injection for `trt-localize`: what a user's files go through (issue 13). Every run here is the
real command in a real process, on real files; a full disk is a real 2 MB tmpfs.

Whatever happens, four things must hold: every good image gets exactly one report line and its
outputs; no input file changes; nothing is written outside OUT; no process is left behind.
"""
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import ROOT, make_photo

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.fixture
def model_dir(tiny_export):
    return tiny_export[0] / "onnx"


def photos(folder: Path, names: list[str], size=(100, 130)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, name in enumerate(names):
        p = folder / name
        ok, buf = cv2.imencode(p.suffix, make_photo(*size, i)[:, :, ::-1])
        p.write_bytes(buf.tobytes())
        paths.append(p)
    return paths


def hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


class Runner:
    """Runs trt-localize with a tag in its environment, a private HOME and a private working folder,
    so that leftover processes and files written outside OUT can be found."""

    def __init__(self, tmp: Path, model: Path):
        self.tag = uuid.uuid4().hex
        self.home, self.cwd, self.model = tmp / "home", tmp / "cwd", model
        self.home.mkdir()
        self.cwd.mkdir()
        self.env = {**ENV, "INPDIFF_TEST_TAG": self.tag, "HOME": str(self.home)}

    def args(self, *args, steps: bool = True) -> list[str]:
        return [sys.executable, "-m", "inpdiff.runtime.launch", *map(str, args), "--model", str(self.model),
                *(["--steps", "2"] if steps else []), "--quiet"]

    def run(self, *args, cwd: Path | None = None, steps: bool = True) -> subprocess.CompletedProcess:
        """Runs with --steps 2 (fast) unless steps=False (the model's default, or what args say)."""
        return subprocess.run(self.args(*args, steps=steps), capture_output=True, text=True, env=self.env,
                              cwd=cwd or self.cwd, timeout=300)

    def start(self, *args, cwd: Path | None = None) -> subprocess.Popen:
        return subprocess.Popen(self.args(*args, "--workers", "1", "--batch", "1"), env=self.env, cwd=cwd or self.cwd,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def processes(self) -> list[int]:
        """PIDs of every live process started by these runs (decoders, trackers included)."""
        found = []
        for d in Path("/proc").iterdir():
            if not d.name.isdigit() or int(d.name) == os.getpid():
                continue
            try:
                if self.tag.encode() in (d / "environ").read_bytes():
                    found.append(int(d.name))
            except OSError:
                continue
        return found

    def assert_no_process_left(self, within: float = 5.0) -> None:
        deadline = time.time() + within
        while self.processes() and time.time() < deadline:
            time.sleep(0.1)
        left = self.processes()
        for pid in left:  # do not leak them into the rest of the test session either
            os.kill(pid, signal.SIGKILL)
        assert not left, f"processes left behind: {left}"

    def assert_nothing_written_outside(self, *allowed_changes: Path) -> None:
        assert not any(self.home.rglob("*")), f"written under HOME: {list(self.home.rglob('*'))}"
        assert not any(self.cwd.rglob("*")), f"written in the working folder: {list(self.cwd.rglob('*'))}"


def report(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "report.jsonl").read_text().splitlines()]


def kill_after(proc: subprocess.Popen, out: Path, lines: int, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        path = out / "report.jsonl"
        if path.exists() and path.read_bytes().count(b"\n") >= lines:
            break
        time.sleep(0.005)
    proc.kill()
    proc.wait()


def assert_complete(out: Path, good: list[Path], bad: list[Path] = ()) -> None:
    """Exactly one line per input, outputs in place for the good ones, errors for the bad ones."""
    lines = report(out)
    paths = [line["path"] for line in lines]
    assert sorted(paths) == sorted(str(p) for p in [*good, *bad]), "missing or duplicate report lines"
    outputs = set()
    for line in lines:
        if Path(line["path"]) in set(bad):
            assert "error" in line
            continue
        assert "error" not in line, line
        assert set(line["outputs"]) == {"prob", "mask", "overlay", "thumb", "view"}
        files = set(line["outputs"].values())
        assert len(files) == 5 and all(Path(f).is_file() for f in files)
        assert not files & outputs, "two inputs share an output file"
        outputs |= files


# ---- data loss ----

def test_outputs_never_replace_inputs_or_each_other(model_dir, tmp_path):
    run = Runner(tmp_path, model_dir)
    src = tmp_path / "photos"
    # a.prob.png is a *photo* whose name a.png's probability map would take.
    inputs = photos(src, ["a.png", "a.jpg", "a_1.png", "a.prob.png"])
    before = hashes(src)
    r = run.run(src, "-o", src)
    assert r.returncode == 0, r.stderr
    after = hashes(src)
    assert {k: after[k] for k in before} == before, "an input was overwritten"
    assert_complete(src, inputs)
    written = {f for line in report(src) for f in line["outputs"].values()}
    assert not written & {str(p) for p in inputs}
    # Again, and again: the outputs are not taken for photos, nothing is redone.
    for _ in range(2):
        r = run.run(src, "-o", src)
        assert r.returncode == 0 and "0 image(s)" in r.stdout, r.stdout + r.stderr
    again = hashes(src)
    assert len(report(src)) == 4 and set(again) == set(after)  # no new files
    state = ("report.jsonl", "summary.csv", "index-data.js")  # and the dot-files: the run's own bookkeeping
    assert all(again[k] == after[k] for k in after if not k.startswith(".") and k not in state)
    run.assert_nothing_written_outside()


def test_an_output_folder_inside_the_walked_folder_is_not_walked(model_dir, tmp_path):
    run = Runner(tmp_path, model_dir)
    src = tmp_path / "photos"
    inputs = photos(src, [f"p{i}.png" for i in range(3)])
    old = tmp_path / "photos" / "old-run"
    (old / "x").mkdir(parents=True)
    (old / ".trt-localize.json").write_text("{}")  # another run's output folder
    photos(old / "x", ["q.png"])
    for _ in range(3):
        r = run.run(".", cwd=src)  # the default OUT, ./localized, is inside the walked tree
        assert r.returncode == 0, r.stderr
    out = src / "localized"
    assert sorted(Path(line["path"]).name for line in report(out)) == [p.name for p in inputs]
    assert not (out / "localized").exists()


# ---- faults ----

@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root): the full-disk test runs in CI as root")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_full_disk_stops_cleanly_and_a_plain_resume_finishes(model_dir, tmp_path, small_disk):
    run = Runner(tmp_path, model_dir)
    src = tmp_path / "photos"
    inputs = photos(src, [f"p{i:02d}.png" for i in range(40)], size=(200, 260))
    out = small_disk / "out"
    r = run.run(src, "-o", out)
    assert r.returncode == 4, r.stdout + r.stderr
    assert "no space left on" in r.stderr and "Traceback" not in r.stderr
    lines = report(out)  # every line whole, and each names outputs that are there
    assert 0 < len(lines) < 40 and all("error" not in x and Path(x["outputs"]["prob"]).is_file() for x in lines)
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    r = run.run(src, "-o", out)  # no --retry-failed
    assert r.returncode == 0, r.stderr
    assert_complete(out, inputs)
    assert (out / "summary.csv").is_file()
    run.assert_no_process_left()


def test_kill_9_leaves_no_process_behind(model_dir, tmp_path):
    run = Runner(tmp_path, model_dir)
    src, out = tmp_path / "photos", tmp_path / "out"
    inputs = photos(src, [f"p{i:02d}.png" for i in range(30)], size=(192, 192))
    kill_after(run.start(src, "-o", out), out, 2)
    run.assert_no_process_left()
    assert run.run(src, "-o", out).returncode == 0
    assert_complete(out, inputs)
    assert "crashed_on" not in (out / ".trt-localize.claims").read_text()  # a kill is not a crash


def test_crash_notes_of_the_cpp_command_are_read_and_a_restart_voids_them(model_dir, tmp_path):
    """The notes are one format for both commands: a note trt-localize-cpp left (a photo it crashed on
    alone) gets the photo an error line here, and --restart writes the line that voids every earlier note."""
    run = Runner(tmp_path, model_dir)
    src, out = tmp_path / "photos", tmp_path / "out"
    good = photos(src, ["a.png", "b.png"], size=(96, 96))
    out.mkdir()
    note = {"crashed_on": str(good[0]), "alone": True, "signal": 7}
    (out / ".trt-localize.claims").write_text(json.dumps(note) + "\n")
    r = run.run(src, "-o", out)
    assert r.returncode == 1 and "crashed (signal 7) while working on this file alone" in r.stderr, r.stderr
    assert_complete(out, good[1:], good[:1])
    assert run.run(src, "-o", out, "--restart").returncode == 0
    assert_complete(out, good)
    assert {"restarted": True} in [json.loads(line) for line in (out / ".trt-localize.claims").read_text().splitlines()]


def test_a_photo_the_run_crashed_on_is_reported_not_retried_forever(model_dir, tmp_path):
    """A crash (a fatal signal: a hostile file can crash a library outright) leaves the photos in flight
    behind, which the next run notes in the claims journal. After a crash with several photos in flight,
    the next run works them one at a time; after a crash with one alone, the next run gives that photo
    an error line and finishes the others (a resumed run would meet the same file, and crash, every
    time). --restart tries it again. The notes are trt-localize-cpp's."""
    import resource

    run = Runner(tmp_path, model_dir)
    src, out = tmp_path / "photos", tmp_path / "out"
    src.mkdir()
    cv2.imwrite(str(src / "a_large.png"), np.random.default_rng(1).integers(0, 256, (3000, 3000, 3), np.uint8))
    small = photos(src, [f"{name}.png" for name in "bcdefg"], size=(160, 160))
    lock, claims = out / ".trt-localize.lock", out / ".trt-localize.claims"

    def crash_when(flying) -> None:
        """Runs, sends SIGSEGV once the lock file lists photos in flight that `flying` accepts."""
        proc = subprocess.Popen(run.args(src, "-o", out, "--spill-above", "0"), env=run.env, cwd=run.cwd,
                                stderr=subprocess.PIPE, text=True,  # and no core file
                                preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_CORE, (0, 0)))
        deadline = time.time() + 120
        while time.time() < deadline:
            assert proc.poll() is None, proc.stderr.read()
            pid, _, paths = (lock.read_text() if lock.exists() else "").partition("\n")
            try:
                if pid == str(proc.pid) and flying([Path(p).name for p in json.loads(paths)]):
                    break
            except ValueError:
                pass  # read while it was rewritten
            time.sleep(0.005)
        proc.send_signal(signal.SIGSEGV)  # as the photo's own crash would arrive
        err = proc.communicate(timeout=120)[1]
        assert proc.returncode == -signal.SIGSEGV, err
        run.assert_no_process_left()

    crash_when(lambda names: "a_large.png" in names and len(names) > 1)
    # Resumed: the photos in flight at the crash one at a time, the large one first; it crashes again.
    crash_when(lambda names: names == ["a_large.png"])
    r = run.run(src, "-o", out)
    assert r.returncode == 1, r.stderr
    assert "the last run on" in r.stderr and "crashed (signal 11) with 1 photo(s) in flight" in r.stderr
    assert "Fatal Python error: Segmentation fault" in r.stderr  # faulthandler's report, for a bug report
    lines = {Path(line["path"]).name: line for line in report(out)}
    assert "crashed (signal 11) while working on this file alone" in lines["a_large.png"]["error"]
    assert_complete(out, small, [src / "a_large.png"])
    notes = [json.loads(line) for line in claims.read_text().splitlines() if "crashed_on" in line]
    assert len(notes) > 2 and all(n["signal"] == signal.SIGSEGV for n in notes)
    assert "a_large.png" in {Path(n["crashed_on"]).name for n in notes[:-1]} and not any(n["alone"] for n in notes[:-1])
    assert (Path(notes[-1]["crashed_on"]).name, notes[-1]["alone"]) == ("a_large.png", True)
    r = run.run(src, "-o", out, "--restart")
    assert r.returncode == 0, r.stderr
    assert_complete(out, small + [src / "a_large.png"])


def test_a_crash_report_survives_the_list_in_flight_being_rewritten_after_it(tmp_path):
    """faulthandler appends its report from a signal handler while other threads go on: one of them that
    rewrites the photos in flight (a photo written, say) must not cut the report off, or the crash leaves
    no notes (seen under load). Here the order is forced: the report is appended, the list rewritten
    shorter, and the process dies; the next run must see the crash, with the list as it was last."""
    out = tmp_path / "out"
    a, b = str(tmp_path / ("a" * 40 + ".png")), str(tmp_path / "b.png")
    script = (f"import os, pathlib\nfrom inpdiff.runtime.out_folder import OutFolder, LOCK_FILE\n"
              f"f = OutFolder(pathlib.Path({str(out)!r}))\n"
              f"f.in_flight([{a!r}, {b!r}])\n"
              "with open(f.out / LOCK_FILE, 'a') as log: log.write('Fatal Python error: Segmentation fault\\n\\nThread 0x1:\\n')\n"
              f"f.in_flight([{a!r}])\nos._exit(0)  # as the signal ends it: no close\n")
    subprocess.run([sys.executable, "-c", script], env=ENV, check=True, timeout=60)
    from inpdiff.runtime.out_folder import OutFolder

    again = OutFolder(out)
    try:
        assert "crashed (signal 11) with 1 photo(s) in flight" in (again.last_crash() or ""), again.last_crash()
    finally:
        again.close()


def test_a_torn_claims_line_is_cut_off_before_new_claims_follow_it(model_dir, tmp_path):
    """A kill or a full disk can leave half a line at the end of the claims journal; the next run's
    first claim must start a line of its own, or a later resume could not read it."""
    run = Runner(tmp_path, model_dir)
    src, out = tmp_path / "photos", tmp_path / "out"
    inputs = photos(src, ["a.png", "b.png"], size=(96, 96))
    out.mkdir()
    (out / ".trt-localize.claims").write_text('{"path": "/photos/gone.png", "stem": "go')
    assert run.run(src, "-o", out).returncode == 0
    claims = [json.loads(line) for line in (out / ".trt-localize.claims").read_text().splitlines()]
    assert sorted(Path(c["path"]).name for c in claims) == ["a.png", "b.png"]
    assert_complete(out, inputs)


def test_two_runs_on_one_out_and_a_stale_lock(model_dir, tmp_path):
    run = Runner(tmp_path, model_dir)
    src, out = tmp_path / "photos", tmp_path / "out"
    inputs = photos(src, [f"p{i:02d}.png" for i in range(30)], size=(192, 192))
    first = run.start(src, "-o", out)
    while not (out / "report.jsonl").exists():
        assert first.poll() is None, first.stderr.read()
        time.sleep(0.01)
    second = run.run(src, "-o", out)
    assert second.returncode == 2 and f"(PID {first.pid})" in second.stderr, second.stderr
    first.kill()  # its lock dies with it
    first.wait()
    third = run.run(src, "-o", out)
    assert third.returncode == 0, third.stderr
    assert_complete(out, inputs)
    run.assert_no_process_left()


def test_random_kills_bad_inputs_and_resumes(model_dir, tmp_path):
    """The standing check: good and bad inputs side by side, killed at random points, resumed."""
    run = Runner(tmp_path, model_dir)
    src, out = tmp_path / "photos", tmp_path / "out"
    good = photos(src, [f"g{i:02d}.png" for i in range(16)], size=(160, 160))
    good += photos(src / "sub", ["g.jpg", "g.png"], size=(160, 160))
    bad = [src / "empty.png", src / "text.jpg", src / "truncated.png", src / "loop.png", src / "fifo.png"]
    bad[0].write_bytes(b"")
    bad[1].write_text("not an image")
    bad[2].write_bytes(good[0].read_bytes()[:200])
    bad[3].symlink_to(bad[3])
    os.mkfifo(bad[4])
    before = hashes(src)
    rng = random.Random(0)
    for _ in range(3):
        kill_after(run.start(src, "-o", out), out, rng.randint(1, 6))
    r = run.run(src, "-o", out)
    assert r.returncode == 1, r.stdout + r.stderr  # the bad inputs failed
    assert_complete(out, good, bad)
    assert hashes(src) == before
    errors = {Path(x["path"]).name: x["error"] for x in report(out) if "error" in x}
    assert "Too many levels of symbolic links" in errors["loop.png"] and "FIFO" in errors["fifo.png"]
    run.assert_no_process_left()
    run.assert_nothing_written_outside()


# ---- messages and exit codes ----

def test_edited_manifest_is_refused_naming_the_field(model_dir, tmp_path):
    run = Runner(tmp_path, model_dir)
    src = tmp_path / "photos"
    photos(src, ["a.png"])
    edited = tmp_path / "model"
    edited.mkdir()
    for f in model_dir.iterdir():
        (edited / f.name).write_bytes(f.read_bytes())
    manifest = json.loads((edited / "manifest.json").read_text())
    (edited / "manifest.json").write_text(json.dumps({**manifest, "tile": manifest["tile"] + 1}))
    run.model = edited
    r = run.run(src, "-o", tmp_path / "out")
    assert r.returncode == 2 and "field 'tile' is 65, not a positive multiple of 32" in r.stderr, r.stderr
    (edited / "manifest.json").write_text("{}")
    r = run.run(src, "-o", tmp_path / "out")
    assert r.returncode == 2 and "field 'files' is missing" in r.stderr, r.stderr
    run.model = tmp_path / "no-such-model"
    r = run.run(src, "-o", tmp_path / "out")
    assert r.returncode == 2 and "no such model folder" in r.stderr, r.stderr
    run.assert_no_process_left()  # the decoder process, started before the model was read, went with the run


def test_clear_messages_for_bad_out_and_bad_settings_files(model_dir, tmp_path):
    run = Runner(tmp_path, model_dir)
    src, out = tmp_path / "photos", tmp_path / "out"
    photos(src, ["a.png", "b.png"])
    afile = tmp_path / "a-file"
    afile.write_text("x")
    r = run.run(src, "-o", afile)
    assert r.returncode == 2 and "is a file, not a folder" in r.stderr and afile.read_text() == "x"
    assert run.run(src, "-o", out).returncode == 0
    (out / ".trt-localize.json").write_text("")
    r = run.run(src, "-o", out)
    assert r.returncode == 2 and ".trt-localize.json: unreadable settings file" in r.stderr, r.stderr
    for bad in (["--steps", "0"], ["--max-side", "0"], ["--samples", "0"], ["--decoders", "0"]):
        r = run.run(src, "-o", out, *bad, steps=False)
        assert r.returncode == 2 and "must be at least" in r.stderr, (bad, r.stderr)
    run.assert_no_process_left()


def test_resume_compares_effective_settings_and_names_the_differences(model_dir, tmp_path):
    run = Runner(tmp_path, model_dir)
    src, out = tmp_path / "photos", tmp_path / "out"
    photos(src, ["a.png", "b.png"])
    r = run.run(src, "-o", out, steps=False)  # no --steps: the model's default
    assert r.returncode == 0, r.stderr
    steps = json.loads((model_dir / "manifest.json").read_text())["steps"]
    r = run.run(src, "-o", out, "--steps", steps, steps=False)
    assert r.returncode == 0, r.stderr  # the default, given explicitly, is the same setting
    r = run.run(src, "-o", out, "--seed", "5")
    assert r.returncode == 2 and "seed 0 -> 5" in r.stderr and len(r.stderr) < 600, r.stderr
    # Maps with and without near copies differ: a run never mixes them, whichever was first.
    r = run.run(src, "-o", out, "--no-near-copies")
    assert r.returncode == 2 and "near_copies True -> False" in r.stderr, r.stderr
    run.model = ROOT / "models" / "edge-c"  # another model: named, not dumped
    r = run.run(src, "-o", out)
    assert r.returncode == 2 and "model (another model's files)" in r.stderr and len(r.stderr) < 600, r.stderr


def test_end_line_counts_this_run_and_the_whole_report(model_dir, tmp_path):
    run = Runner(tmp_path, model_dir)
    src, out = tmp_path / "photos", tmp_path / "out"
    photos(src, ["a.png"])
    (src / "bad.png").write_bytes(b"broken")
    assert run.run(src, "-o", out).returncode == 1
    photos(src, ["c.png"])
    r = run.run(src, "-o", out)
    assert r.returncode == 1
    assert "1 image(s)" in r.stdout and "0 failed" in r.stdout and "whole report: 3 image(s)" in r.stdout
    assert "1 failed" in r.stdout.split("whole report")[1]
    line = report(out)[0]
    assert {"mask_threshold", "score_threshold"} <= set(line) and "threshold" not in line


def test_a_resume_from_another_working_folder_keeps_outputs_inside_out(model_dir, tmp_path):
    run = Runner(tmp_path, model_dir)
    src = tmp_path / "photos"
    inputs = photos(src, [f"p{i:02d}.png" for i in range(20)], size=(192, 192))
    kill_after(run.start("photos", "-o", "out", cwd=tmp_path), tmp_path / "out", 2)  # relative paths
    other = tmp_path / "elsewhere"
    other.mkdir()
    r = run.run(src, "-o", tmp_path / "out", cwd=other)
    assert r.returncode == 0, r.stderr
    assert not any(other.rglob("*")), "outputs landed in the working folder"
    lines = report(tmp_path / "out")
    assert len(lines) == len(inputs) and all(
        (tmp_path / "out").resolve() in Path(tmp_path, f).resolve().parents
        for x in lines for f in x["outputs"].values())
