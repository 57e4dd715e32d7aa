"""Localization on Ray, for when one machine is not enough. Ray is the optional `ray` extra.

Two ways in:
- `Localize`, a callable class for Ray Data, in a pipeline of your own:
      ds = ray.data.read_images(paths, include_paths=True, mode="RGB")
      ds = ds.map_batches(Localize, fn_constructor_kwargs={"model_dir": "models/edge-s"},
                          concurrency=4, num_gpus=1, batch_size=8)   # num_cpus=1 on CPU machines
  It returns the columns path, score, inpainted, regions (JSON text) and prob (uint8, round(255 p)).
- `trt-localize --ray ADDRESS`: the batch job of `trt-localize` on a cluster. One actor per GPU
  (or per CPU core on CPU clusters) reads each file itself, so a bad file fails alone, and writes
  its outputs; the driver streams the inputs, keeps a bounded number of tasks in flight, and
  writes the report, so resuming, the summary and the exit status are those of the local run.
  OUT must be on a file system every node sees.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from ..io import MAX_PIXELS
from .backends import BackendSpec
from .decoding import Spill, decode_or_spill
from .inputs import Job
from .localizer import Localizer, LocalizeConfig
from .outputs import report_line
from .pipeline import Done, error_message


def _config(config: LocalizeConfig | dict | None) -> LocalizeConfig:
    return config if isinstance(config, LocalizeConfig) else LocalizeConfig(**(config or {}))


class Localize:
    """Ray Data callable class: a batch of RGB images -> their probability maps and verdicts."""

    def __init__(self, model_dir: str | None = None, backend: str | BackendSpec = "auto",
                 config: LocalizeConfig | dict | None = None, threads: int = 1):
        self.localizer = Localizer(model_dir, backend, _config(config), threads)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = [self.localizer.localize(np.asarray(image, np.uint8)) for image in batch["image"]]
        probs = np.empty(len(results), object)  # images of different sizes: one array each
        probs[:] = [np.round(r.prob * 255).astype(np.uint8) for r in results]
        return {"path": np.asarray(batch.get("path", [""] * len(results))),
                "score": np.array([r.score for r in results], np.float32),
                "inpainted": np.array([r.inpainted for r in results]),
                "regions": np.array([json.dumps([asdict(g) for g in r.regions]) for r in results]),
                "prob": probs}


class LocalizeFiles:
    """The worker of `trt-localize --ray`: (path, out_stem) pairs -> their report lines, outputs written."""

    def __init__(self, model_dir: str | None, backend: str | BackendSpec, config: LocalizeConfig, outputs: str,
                 max_pixels: int = MAX_PIXELS, threads: int = 1, thumbs_of: str | None = None,
                 spill_above: int = 0):
        self.localizer = Localizer(model_dir, backend, config, threads)
        self.outputs, self.max_pixels = outputs, max_pixels
        # As in the local pipeline: larger photos are worked from TMPDIR, a band of rows at a time.
        self.spill_above = 0 if config.max_side else spill_above
        self.thumbs_of = Path(thumbs_of) if thumbs_of else None

    def __call__(self, jobs: list[tuple[str, str]]) -> list[dict]:
        lines = []
        for path, stem in jobs:
            job, t = Job(Path(path), Path(stem)), time.perf_counter()
            try:
                image = decode_or_spill(job.path, self.max_pixels, self.spill_above)
                image = image.open() if isinstance(image, Spill) else image
                done = Done(job, image, self.localizer.localize(image))
            except Exception as e:
                done = Done(job, error=error_message(job, e))
            done.elapsed_ms = round((time.perf_counter() - t) * 1000, 1)
            lines.append(report_line(done, self.localizer, self.outputs, self.thumbs_of))
        return lines


def _chunks(jobs: Iterable[Job], size: int) -> Iterator[list[tuple[str, str]]]:
    chunk = []
    for job in jobs:
        chunk.append((str(job.path), str(job.out_stem)))
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def run_on_ray(address: str, jobs: Iterable[Job], model_dir: str | None, backend: str | BackendSpec,
               config: LocalizeConfig, outputs: str, max_pixels: int, write: Callable[[dict], None],
               files_per_task: int = 4, actors: int = 0, thumbs_of: Path | None = None, spill_above: int = 0) -> None:
    """Run every job on the Ray cluster at `address` ('local' starts one on this machine); `write`
    gets each report line on the driver. A crashed actor fails its task's files and is replaced."""
    try:
        import ray
    except ImportError:
        raise RuntimeError("--ray needs Ray: pip install 'inpdiff[ray]'") from None
    ray.init(address=None if address == "local" else address, include_dashboard=False,
             log_to_driver=False, configure_logging=False)
    try:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        n = actors or gpus or max(1, int(resources.get("CPU", 1)))
        worker = ray.remote(num_gpus=1 if gpus else 0, num_cpus=0 if gpus else 1)(LocalizeFiles)
        args = (model_dir and str(Path(model_dir).resolve()), backend, config, outputs, max_pixels, 1,
                thumbs_of and str(Path(thumbs_of).resolve()), spill_above)
        idle = [worker.remote(*args) for _ in range(n)]
        in_flight: dict = {}  # task -> (actor, chunk)
        chunks = _chunks(jobs, files_per_task)
        while True:
            while idle and (chunk := next(chunks, None)) is not None:
                actor = idle.pop()
                in_flight[actor.__call__.remote(chunk)] = (actor, chunk)
            if not in_flight:
                break
            [ready], _ = ray.wait(list(in_flight), num_returns=1)
            actor, chunk = in_flight.pop(ready)
            try:
                lines = ray.get(ready)
            except ray.exceptions.RayError as e:  # the actor died (or raised): its files fail, a new one takes over
                message = str(e).splitlines()[0]
                lines = [{"path": p, "mask_threshold": config.threshold, "steps": config.steps, "samples": config.samples,
                          "backend": "ray", "score": None, "inpainted": None, "regions": [],
                          "error": f"{p}: worker failed: {message}", "elapsed_ms": 0.0} for p, _ in chunk]
                ray.kill(actor)
                actor = worker.remote(*args)
            for line in lines:
                write(line)
            idle.append(actor)
    finally:
        ray.shutdown()
