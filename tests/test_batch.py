"""Batch mode: streamed inputs, the pipeline, resuming, lighter outputs, Ray."""
import csv
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path

import cv2
import numpy as np
import pytest

from inpdiff.copies import copy_cover
from inpdiff.io import read_image
from inpdiff.runtime.decoding import Handover, IsolatedDecoder, _decode
from inpdiff.runtime.inputs import Job, iter_jobs, mirrored
from inpdiff.runtime.localizer import Localizer, LocalizeConfig
from inpdiff.runtime.pipeline import PipelineConfig, _assemble, _Pending, _PixelBudget, run_pipeline
from inpdiff.runtime.report import Report, ResumeError

from conftest import make_photo

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.fixture
def model_dir(tiny_export):
    return tiny_export[0] / "onnx"


def photos(folder: Path, n: int, size=(100, 130)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"p{i:03d}.png" for i in range(n)]
    for i, p in enumerate(paths):
        cv2.imwrite(str(p), make_photo(*size, i)[:, :, ::-1])
    return paths


def cli(*args, stdin=None, **kw):
    return subprocess.run([sys.executable, "-m", "inpdiff.runtime.cli", *map(str, args)], capture_output=True,
                          text=True, env=ENV, cwd=ROOT, input=stdin, timeout=300, **kw)


def report(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "report.jsonl").read_text().splitlines()]


def test_inputs_stream_mirror_and_stay_inside_out(tmp_path):
    src = tmp_path / "in"
    photos(src / "a", 2)
    photos(src / "b" / "c", 1)
    (src / "a" / "p000.jpg").write_bytes((src / "a" / "p000.png").read_bytes())  # same stem, other format
    (src / "a" / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    jobs = iter_jobs([str(src)], out)
    assert next(jobs).path.name == "p000.jpg"  # a generator: nothing is listed ahead
    stems = sorted(str(j.out_stem.relative_to(out)) for j in iter_jobs([str(src)], out))
    assert stems == ["a/p000", "a/p000", "a/p001", "b/c/p000"]  # candidates: out_folder.py makes them unique
    globbed = [j.out_stem.relative_to(out).as_posix() for j in iter_jobs([f"{src}/**/*.png"], out)]
    assert sorted(globbed) == ["a/p000", "a/p001", "b/c/p000"]
    assert mirrored("/data/x/y.jpg").as_posix() == "data/x/y.jpg"
    assert mirrored("../../etc/y.jpg").as_posix() == "__/__/etc/y.jpg"
    listed = tmp_path / "list.txt"
    listed.write_text(f"# a comment\n{src}/a/p001.png\n\n../up.png\n")
    jobs = list(iter_jobs([], out, [str(listed)]))
    assert [j.path.name for j in jobs] == ["p001.png", "up.png"]
    assert all(out in j.out_stem.parents for j in jobs)


# assembled on assembler threads / on the inference workers; flips: a call a mirrored view
@pytest.mark.parametrize("copies, flips", [(True, 1), (False, 1), (False, 4)])
def test_pipeline_equals_localize_image_by_image(model_dir, tmp_path, copies, flips):
    paths = photos(tmp_path, 3) + [tmp_path / "missing.png"]
    cv2.imwrite(str(tmp_path / "big.png"), make_photo(150, 200, 9)[:, :, ::-1])
    paths.insert(1, tmp_path / "big.png")
    loc = Localizer(model_dir, config=LocalizeConfig(steps=3, seed=4, copies=copies, flips=flips), threads=1)
    done = {}
    run_pipeline(loc, iter_jobs(map(str, paths), tmp_path / "out"), PipelineConfig(batch=3, workers=2),
                 lambda d: done.setdefault(d.job.path.name, d))
    assert set(done) == {p.name for p in paths}
    assert "no such file" in done["missing.png"].error
    for p in paths[:-1]:
        ref = loc.localize(p)
        assert np.abs(done[p.name].result.prob - ref.prob).max() < 1e-5, p.name


def test_tiles_are_blended_in_plan_order_whatever_order_they_finish_in(model_dir):
    # Float sums depend on their order: blended as they arrive, overlapping tiles would give maps that
    # differ, in the last bits, from localize's and from one run to the next.
    loc = Localizer(model_dir, config=LocalizeConfig(steps=1), threads=1)
    plan = loc.plan(make_photo(300, 400, 2))
    rng = np.random.default_rng(1)
    maps = rng.random((len(plan.origins), 1, *plan.shape), dtype=np.float32)
    pending = _Pending(None, plan, 0.0, loc.accumulator(plan))
    order = rng.permutation(len(maps))
    last = [pending.add(loc, i, maps[i], None) for i in order]
    assert last == [False] * (len(maps) - 1) + [True] and not pending.early
    assert np.array_equal(loc.finish(plan, pending.acc).prob, loc.assemble(plan, maps).prob)


def test_the_pixel_budget_waits_for_room_and_lets_a_large_photo_in_alone():
    flying = []
    budget = _PixelBudget(100, flying.append)

    def admitting(job, pixels, alone=False) -> threading.Thread:
        t = threading.Thread(target=budget.admit, args=(job, pixels, alone), daemon=True)
        t.start()
        t.join(0.3)
        return t

    a, b, c, d, e = (Job(Path(name), Path(name)) for name in "abcde")
    budget.admit(a, 60)
    waiting = admitting(b, 60)
    assert waiting.is_alive()  # 120 > 100
    budget.release(a)
    waiting.join(5)
    assert not waiting.is_alive() and budget.total == 60
    assert flying == [["a"], [], ["b"]]  # the paths in flight, as they change
    budget.release(b)
    assert not admitting(c, 500).is_alive() and budget.total == 100  # alone, counted as the limit
    budget.release(c)
    budget.admit(c, 0)  # a format whose header gave no size...
    budget.correct(c, 90)  # ...decoded: 90
    waiting = admitting(d, 20)
    assert waiting.is_alive()
    budget.release(c)
    waiting.join(5)
    # A photo to be worked alone (a crash suspect) waits for an empty pipeline, then keeps it.
    lone = admitting(e, 1, alone=True)
    assert lone.is_alive()  # d is in flight
    budget.release(d)
    lone.join(5)
    assert not lone.is_alive() and flying[-1] == ["e"]
    waiting = admitting(a, 1)
    assert waiting.is_alive()  # room for its pixels, but e is alone
    budget.close()  # the run ends: nothing waits for room any more
    waiting.join(5)
    assert not waiting.is_alive()


def test_photos_are_admitted_by_pixels_and_let_go_once_written(model_dir, tmp_path):
    # Room for one photo's pixels: each photo is cut up only once the one before it is written, and by
    # then no thread of the pipeline still holds that photo (a batch of large photos is held as one is).
    paths = photos(tmp_path, 4, (150, 200))
    loc = Localizer(model_dir, config=LocalizeConfig(steps=1), threads=1)
    written, at_each_cut = [], []

    def on_tiles(planned: int, inferred: int) -> None:
        if planned:
            at_each_cut.append([ref() is not None for ref in written])

    run_pipeline(loc, iter_jobs(map(str, paths), tmp_path / "out"),
                 PipelineConfig(batch=2, workers=2, spill_above=150 * 200),
                 lambda done: written.append(weakref.ref(done.image)), on_tiles=on_tiles)
    assert at_each_cut == [[], [False], [False, False], [False, False, False]]


def test_a_stop_while_the_stages_shut_down_is_raised_once_every_thread_is_done(model_dir, tmp_path):
    """Ctrl-C as the last photo is written, when the main thread is joining the stages: it is raised once
    they are all done. Raised in the middle of the joins, it left workers inside ONNX Runtime as the
    sessions were freed (trt-localize aborted, exit -6) and the writer writing to a closed report."""
    paths = photos(tmp_path, 2)
    written = []

    def write(done) -> None:
        written.append(done.job.path.name)
        if len(written) == len(paths):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)  # the main thread takes the signal while the writer is still at work
            written.append("whole")

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # pytest may run with SIGINT ignored
    try:
        with Localizer(model_dir, config=LocalizeConfig(steps=2), threads=1) as loc:
            with pytest.raises(KeyboardInterrupt):
                run_pipeline(loc, iter_jobs(map(str, paths), tmp_path / "out"), PipelineConfig(batch=1, workers=2), write)
            alive = [t.name for t in threading.enumerate() if t.name.startswith(("infer", "assemble", "writer", "feeder"))]
    finally:
        signal.signal(signal.SIGINT, previous)
    assert alive == [] and written[-1] == "whole"


def test_a_stopped_run_ends_the_copy_search_of_its_photo_in_flight(model_dir, tmp_path):
    """Ctrl-C waited for the copy search of the photo in flight: 15-27 s on a 48 MP photo. The run's
    stop now ends the search at its next band, and the photo is left for the next run to redo."""
    path = photos(tmp_path, 1, (2400, 3200))[0]
    image = read_image(path)
    t = time.perf_counter()
    copy_cover(image)  # the runtime's settings, near copies and all
    search = time.perf_counter() - t
    stop, written, stopped_at = threading.Event(), [], []

    def on_tiles(planned: int, inferred: int) -> None:
        if planned:  # the photo is cut up, and its search has begun
            stop.set()
            stopped_at.append(time.perf_counter())

    loc = Localizer(model_dir, config=LocalizeConfig(steps=1), threads=1)
    try:
        run_pipeline(loc, iter_jobs([str(path)], tmp_path / "out"), PipelineConfig(workers=2), written.append,
                     stop, on_tiles)
    finally:
        loc.close()  # waits for the copy threads
    assert written == [] and time.perf_counter() - stopped_at[0] < search / 4, search


def test_a_photo_whose_copy_search_was_stopped_is_not_written_as_failed(model_dir):
    """Its tiles all done when the run stopped its search: no report line, so the next run redoes it."""
    stop = threading.Event()
    stop.set()

    def assembled(loc: Localizer, stop: threading.Event | None) -> list:
        plan = loc.start_copies(loc.plan(make_photo(100, 130, 0)), stop)
        pending, finished = _Pending(None, plan, 0.0, loc.accumulator(plan)), queue.Queue()
        for i, m in enumerate(loc.infer(np.stack([plan.tile(i) for i in range(len(plan.origins))]), plan.origins)):
            pending.add(loc, i, m, None)
        _assemble(loc, pending, finished)
        return list(finished.queue)

    with Localizer(model_dir, config=LocalizeConfig(steps=1), threads=1) as loc:
        assert assembled(loc, stop) == []
        [done] = assembled(loc, None)
        assert done.result is not None and done.error is None


class FailOnBlack:
    """The real ONNX Runtime backend, except that a batch holding an all-black tile raises."""

    def __init__(self, model_dir):
        self.inner = Localizer(model_dir, threads=1).backend
        self.name = self.inner.name

    def condition(self, tiles):
        if (tiles.reshape(len(tiles), -1).max(axis=1) == 0).any():
            raise RuntimeError("worker crashed")
        return self.inner.condition(tiles)

    def step(self, *args):
        return self.inner.step(*args)


def test_a_failing_worker_fails_its_images_only(model_dir, tmp_path):
    paths = photos(tmp_path, 4, (64, 64))
    cv2.imwrite(str(tmp_path / "black.png"), np.zeros((64, 64), np.uint8))
    loc = Localizer(model_dir, FailOnBlack(model_dir), LocalizeConfig(steps=2))
    done = {}
    run_pipeline(loc, iter_jobs(map(str, paths + [tmp_path / "black.png"]), tmp_path / "out"),
                 PipelineConfig(batch=1, workers=2), lambda d: done.setdefault(d.job.path.name, d))
    assert "inference failed: RuntimeError: worker crashed" in done["black.png"].error
    assert all(done[p.name].result is not None for p in paths)


def crashing_decode(path, max_pixels):
    """read_image, except that poison.png kills its process, as a segfault in a codec would."""
    if Path(path).name == "poison.png":
        os._exit(70)
    return read_image(path, max_pixels)


def test_a_decoder_crash_fails_that_file_only(model_dir, tmp_path):
    paths = photos(tmp_path, 6, (64, 64))
    (tmp_path / "poison.png").write_bytes(paths[0].read_bytes())
    paths.insert(3, tmp_path / "poison.png")
    loc = Localizer(model_dir, config=LocalizeConfig(steps=1), threads=1)
    done = {}
    run_pipeline(loc, iter_jobs(map(str, paths), tmp_path / "out"),
                 PipelineConfig(workers=1, decoders=2, decode=crashing_decode),
                 lambda d: done.setdefault(d.job.path.name, d))
    assert set(done) == {p.name for p in paths}
    assert "decoder crashed on this file" in done["poison.png"].error and "poison.png" in done["poison.png"].error
    assert all(done[p.name].result is not None for p in paths if p.name != "poison.png")


def test_decoded_photos_come_back_through_files_that_go_and_without_them_where_none_can_be_written(tmp_path):
    """Photos come back from the decoder processes as raw files (decoding.Handover), read whole and
    unlinked; where the folder cannot take them they come back pickled, the same pixels."""
    paths = photos(tmp_path / "in", 2, (90, 70))
    folder = tmp_path / "handover"
    folder.mkdir()
    handed = _decode(read_image, paths[0], 10**8, str(folder))  # what a decoder process does
    assert isinstance(handed, Handover) and Path(handed.path).parent == folder
    assert np.array_equal(handed.open(), read_image(paths[0])) and not Path(handed.path).exists()
    assert isinstance(_decode(read_image, paths[0], 10**8, str(tmp_path / "no-such-folder")), np.ndarray)
    for where in (str(folder), str(tmp_path / "no-such-folder"), None):
        decoder = IsolatedDecoder(1, 10**8, folder=where)
        try:
            for path in paths:
                image = decoder.result(path, decoder.submit(path))
                assert isinstance(image, np.ndarray) and image.flags.writeable
                assert np.array_equal(image, read_image(path))
        finally:
            decoder.close()
        assert not any(folder.iterdir())


def test_the_run_sweeps_photo_folders_of_runs_that_were_killed(model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = tmp_path / "tmp" / f"inpdiff-spill-{gone.stdout.strip()}-abc"
    live = tmp_path / "tmp" / f"inpdiff-spill-{os.getppid()}-abc"  # a run in progress (this test's parent)
    for d in (dead, live):
        d.mkdir()
        (d / "photo-x.rgb").write_bytes(b"left by a kill -9")
    loc = Localizer(model_dir, config=LocalizeConfig(steps=1), threads=1)
    run_pipeline(loc, iter_jobs(map(str, photos(tmp_path / "in", 1)), tmp_path / "out"), PipelineConfig(workers=1),
                 lambda d: None)
    assert not dead.exists() and (live / "photo-x.rgb").exists()
    assert sorted(p.name for p in (tmp_path / "tmp").iterdir()) == [live.name]  # the run's own folder went too


def test_report_drops_torn_and_duplicate_lines_and_refuses_other_settings(tmp_path):
    out = tmp_path / "out"
    r = Report(out, {"threshold": 0.5})
    assert r.add({"path": "a.png", "score": 0.1}) and r.add({"path": "b.png", "error": "bad"})
    assert not r.add({"path": "a.png", "score": 0.1})  # the same input twice: one line
    r.close()
    with open(out / "report.jsonl", "ab") as f:  # a duplicate, then a line cut by a power loss
        f.write(b'{"path": "a.png", "score": 0.1}\n{"path": "c.png", "sco')
    r = Report(out, {"threshold": 0.5})
    r.close()
    assert [line["path"] for line in report(out)] == ["a.png", "b.png"]
    assert r.is_done("a.png") and r.is_done("b.png") and not r.is_done("c.png") and r.failed_before == 1
    r = Report(out, {"threshold": 0.5}, retry_failed=True)
    r.close()
    assert not r.is_done("b.png") and [line["path"] for line in report(out)] == ["a.png"]
    with pytest.raises(ResumeError, match="threshold 0.5 -> 0.6.*--restart"):
        Report(out, {"threshold": 0.6})
    Report(out, {"threshold": 0.6}, restart=True).close()
    assert (out / "report.jsonl").read_text() == ""
    # A setting added since (flips) reads, in a folder made before it, as what those runs worked with.
    Report(out, {"threshold": 0.6}).close()
    Report(out, {"threshold": 0.6, "flips": 1}).close()
    with pytest.raises(ResumeError, match="flips 1 -> 4"):
        Report(out, {"threshold": 0.6, "flips": 4})


def test_resume_after_a_kill_processes_only_what_is_missing(model_dir, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    n = 24
    photos(src, n, (192, 192))
    args = ["-m", "inpdiff.runtime.cli", src, "-o", out, "--model", model_dir, "--steps", "12", "--workers", "1",
            "--batch", "1", "--quiet"]
    proc = subprocess.Popen([sys.executable, *map(str, args)], env=ENV, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (out / "report.jsonl").exists() and len((out / "report.jsonl").read_bytes().splitlines()) >= 3:
            proc.kill()  # SIGKILL: no cleanup at all
            break
        time.sleep(0.01)
    proc.wait()
    first = report(out)
    assert 3 <= len(first) < n, "the run was not stopped in the middle"
    with open(out / "report.jsonl", "ab") as f:
        f.write(b'{"path": "half-writ')  # as a power loss could leave it
    r = cli(src, "-o", out, "--model", model_dir, "--steps", "12", "--quiet")
    assert r.returncode == 0, r.stderr
    assert f"{n - len(first)} image(s)" in r.stdout and f"whole report: {n} image(s)" in r.stdout
    lines = report(out)
    assert sorted(line["path"] for line in lines) == sorted(str(p) for p in src.glob("*.png"))
    assert lines[:len(first)] == first
    assert all((out / f"p{i:03d}.prob.png").exists() for i in range(n))
    with open(out / "summary.csv") as f:
        assert len(list(csv.DictReader(f))) == n


@pytest.mark.parametrize("spill_above", ["0", "1000"], ids=["whole", "spilled"])
def test_ctrl_c_stops_cleanly_and_says_how_to_resume(model_dir, tmp_path, spill_above):
    src, out, tmp = tmp_path / "in", tmp_path / "out", tmp_path / "tmp"
    photos(src, 24, (192, 192))
    tmp.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "inpdiff.runtime.cli", str(src), "-o", str(out), "--model",
                             str(model_dir), "--steps", "12", "--workers", "1", "--batch", "1", "--quiet",
                             "--spill-above", spill_above],
                            env={**ENV, "TMPDIR": str(tmp)}, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # pytest may run with SIGINT ignored (nohup, a background job): restore it
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    while not ((out / "report.jsonl").exists() and (out / "report.jsonl").read_bytes().count(b"\n") >= 2):
        assert proc.poll() is None
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "run the same command again to resume" in stderr
    lines = report(out)
    assert 2 <= len(lines) < 24 and all(Path(x["outputs"]["prob"]).exists() for x in lines)
    assert not list(out.rglob("*.tmp*"))
    assert not os.listdir(tmp)  # photos decoded ahead (spilled to raw files) are removed too


def test_list_from_stdin_and_report_only_outputs(model_dir, tmp_path):
    paths = photos(tmp_path / "in", 3, (64, 64))
    (tmp_path / "in" / "bad.png").write_bytes(b"\x89PNG broken")
    listing = "\n".join(map(str, paths + [tmp_path / "in" / "bad.png", tmp_path / "gone.png"])) + "\n"
    out = tmp_path / "out"
    r = cli("--list", "-", "-o", out, "--model", model_dir, "--steps", "1", "--outputs", "report",
            "--threshold", "0", stdin=listing)
    assert r.returncode == 1 and "5 image(s)" in r.stdout and "2 failed" in r.stdout
    written = sorted(p.name for p in out.rglob("*.png"))
    assert written == [f"{p.stem}.prob.png" for p in paths]  # detected: prob maps only, no mask or overlay
    with open(out / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5 and sum(bool(row["error"]) for row in rows) == 2
    r = cli("--list", "-", "-o", tmp_path / "out2", "--model", model_dir, "--steps", "1", "--outputs", "report",
            "--threshold", "1", stdin="\n".join(map(str, paths)))
    assert r.returncode == 0 and not list((tmp_path / "out2").rglob("*.png"))  # nothing detected, no maps
    r = cli("--list", tmp_path / "nolist.txt", "-o", tmp_path / "out3", "--model", model_dir)
    assert r.returncode == 2 and "nolist.txt" in r.stderr and not (tmp_path / "out3").exists()


def test_memory_stays_flat_over_many_inputs(model_dir, tmp_path):
    """Peak RSS over 5,000 inputs is that over 200: nothing grows with the number of inputs
    (but for the resume bookkeeping, 8 bytes of hash a path)."""
    img = tmp_path / "one.png"
    cv2.imwrite(str(img), make_photo(64, 64, 0))
    links = tmp_path / "links"
    links.mkdir()
    for i in range(5000):
        (links / f"{i:05d}.png").symlink_to(img)
    child = ("import re, sys\nfrom inpdiff.runtime.cli import main\ncode = main(sys.argv[1:])\n"
             "print(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1], file=sys.stderr)\n"
             "sys.exit(code)")
    peaks = []
    for n in (200, 5000):
        listing = "".join(f"{links / f'{i:05d}.png'}\n" for i in range(n))
        r = subprocess.run([sys.executable, "-c", child, "--list", "-", "-o", str(tmp_path / f"out{n}"), "--model",
                            str(model_dir), "--steps", "1", "--outputs", "report", "--threshold", "1", "--quiet"],
                           input=listing, capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=300)
        assert r.returncode == 0, r.stderr
        assert len(report(tmp_path / f"out{n}")) == n
        peaks.append(int(r.stderr.strip().splitlines()[-1]) / 1024)
    assert peaks[1] - peaks[0] < 15, peaks


def test_ray_gives_the_single_process_results(model_dir, tmp_path):
    ray = pytest.importorskip("ray", reason="Ray is the optional `ray` extra")
    src = tmp_path / "in"
    paths = photos(src, 5)
    (src / "bad.png").write_text("not an image")
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    assert cli(src, "-o", local, "--model", model_dir, "--steps", "2").returncode == 1
    r = cli(src, "-o", on_ray, "--model", model_dir, "--steps", "2", "--ray", "local", "--spill-above", "1000")  # worked in bands there
    assert r.returncode == 1, r.stderr
    key = ("path", "score", "inpainted", "regions", "error")
    assert (sorted([tuple(str(x.get(k)) for k in key) for x in report(local)])
            == sorted([tuple(str(x.get(k)) for k in key) for x in report(on_ray)]))
    for p in paths:
        a = cv2.imread(str(local / f"{p.stem}.prob.png"), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(a, cv2.imread(str(on_ray / f"{p.stem}.prob.png"), cv2.IMREAD_UNCHANGED))
        assert (on_ray / "thumbs" / f"{p.stem}.jpg").is_file()  # the Ray workers make the gallery's thumbnails too
    assert "index-data.js" in {f.name for f in on_ray.iterdir()}

    from inpdiff.runtime.ray_localize import Localize

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        ds = ray.data.read_images([str(p) for p in paths], include_paths=True, mode="RGB")
        rows = ds.map_batches(Localize, fn_constructor_kwargs={"model_dir": str(model_dir), "config": {"steps": 2}},
                              concurrency=1, batch_size=2).take_all()
    finally:
        ray.shutdown()
    assert len(rows) == len(paths)
    for row in rows:
        a = cv2.imread(str(local / f"{Path(row['path']).stem}.prob.png"), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(a, row["prob"])
