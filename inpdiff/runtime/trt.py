"""Backend `tensorrt`: the whole call on TensorRT engines (`inpdiff build` makes them; engines.py
checks they fit). `tensorrt` is imported only when an engine runs, so everything else works without it.

Static device buffers for the largest batch, one stream, one execution context per engine. The whole
call (copy of the pinned host tiles and noise, the condition engine, 10 denoising steps with their
sums, the copy back) is captured as one CUDA graph per batch size, after one warm-up enqueue; fresh
noise for each call is written into the pinned host buffer that the captured copy reads, so replays
stay stochastic and seeded runs reproducible. If capture fails, the same enqueues run without a
graph, with a warning (as trtexec does). `close()` frees the graphs, buffers, contexts and engines.
"""
from __future__ import annotations

import threading
import warnings
from pathlib import Path

import numpy as np

from .engines import (ACCUMULATE, ENGINES, EngineError, check_engines, current_target, engine_files,
                      engine_problems, import_tensorrt)
from .model_dir import ModelDir
from .trt_build import build


class _Buffers:
    """Device and pinned host memory for calls of up to `max_batch` tiles and `steps` steps."""

    def __init__(self, model: ModelDir, max_batch: int, steps: int, rows: list[int], stream):
        from .cuda import DeviceBuffer, HostBuffer

        T, B = model.tile, max_batch
        self.map_bytes = T * T * 4                 # one (1, T, T) float32 map
        self.host_image = HostBuffer((B, T, T, 3), np.uint8)
        self.host_noise = HostBuffer((steps + 1, B, 1, T, T), np.float32)
        self.host_total = HostBuffer((B, 1, T, T), np.float32)
        self.host_rows = HostBuffer((steps,), np.int64)
        self.host_rows.array[:] = rows
        self.image = DeviceBuffer(self.host_image.nbytes)
        self.noise = DeviceBuffer(self.host_noise.nbytes)
        self.rows = DeviceBuffer(self.host_rows.nbytes)
        self.conds = {n: DeviceBuffer(B * int(np.prod(s)) * 4) for n, s in model.conditions.items()}
        self.x = [DeviceBuffer(B * self.map_bytes) for _ in range(2)]      # ping-pong x_t
        self.total = [DeviceBuffer(B * self.map_bytes) for _ in range(2)]  # ping-pong sums
        self.prob, self.edge = DeviceBuffer(B * self.map_bytes), DeviceBuffer(B * self.map_bytes)
        stream.htod(self.rows.ptr, self.host_rows.ptr, self.host_rows.nbytes)
        stream.synchronize()
        self.max_batch, self.steps, self.row_values = B, steps, list(rows)

    def free(self) -> None:
        for buf in [self.host_image, self.host_noise, self.host_total, self.host_rows, self.image, self.noise,
                    self.rows, *self.conds.values(), *self.x, *self.total, self.prob, self.edge]:
            buf.free()


class TensorRTBackend:
    """The whole call on TensorRT engines, as one CUDA graph per batch size (see the module docstring)."""

    def __init__(self, model_dir: str | Path, engines_dir: Path | None = None, build_missing: bool = False):
        trt = import_tensorrt()
        from .cuda import Stream

        self.model_dir = Path(model_dir)
        self.model = ModelDir.load(self.model_dir, verify=False)
        engines_dir = engines_dir or self.model_dir / "engines"
        target = current_target()
        if build_missing and engine_problems(self.model_dir, engines_dir, target):
            build(self.model_dir, engines_dir)
        metas = check_engines(self.model_dir, engines_dir, target)
        self.max_batch = min(m["build"]["max_batch"] for m in metas.values())
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = runtime = trt.Runtime(self._logger)  # kept alive as long as its engines
        self.engines = {n: runtime.deserialize_cuda_engine(engine_files(engines_dir, n)[0].read_bytes())
                        for n in ENGINES}
        if any(e is None for e in self.engines.values()):
            raise EngineError(f"{engines_dir}: TensorRT could not load the engines; rebuild them with "
                              f"inpdiff build {self.model_dir} --engines {engines_dir}")
        self.contexts = {n: e.create_execution_context() for n, e in self.engines.items()}
        self.stream = Stream()
        self.name = f"tensorrt-{self.model.precision}"
        self._buffers: _Buffers | None = None
        self._graphs: dict[int, object] = {}  # batch size -> Graph, or None where capture failed
        self._lock = threading.Lock()  # one call at a time: the buffers are shared

    def close(self) -> None:
        """Free the graphs, buffers and stream, then the contexts before their engines (TensorRT's order)."""
        with self._lock:
            for graph in self._graphs.values():
                if graph is not None:
                    graph.free()
            self._graphs.clear()
            if self._buffers is not None:
                self._buffers.free()
                self._buffers = None
            self.stream.free()
            self.contexts.clear()
            self.engines.clear()

    def sample(self, tiles: np.ndarray, samples: int, noise: np.ndarray, rows: list[int]) -> np.ndarray:
        # The condition engine runs once per (tile, sample), so both engines share one batch size and
        # one graph covers the call; samples is 1 by default, where this costs nothing.
        tiles = np.repeat(tiles, samples, axis=0)
        with self._lock:
            out = [self._run(tiles[i:i + self.max_batch], noise[:, i:i + self.max_batch], rows)
                   for i in range(0, len(tiles), self.max_batch)]
        return np.concatenate(out)

    def _run(self, tiles: np.ndarray, noise: np.ndarray, rows: list[int]) -> np.ndarray:
        b = len(tiles)
        buf = self._buffers
        if buf is None or buf.steps != len(rows) or buf.row_values != list(rows):
            if buf is not None:
                buf.free()
            buf = self._buffers = _Buffers(self.model, self.max_batch, len(rows), rows, self.stream)
            self._graphs.clear()
        buf.host_image.array[:b] = tiles
        buf.host_noise.array[:, :b] = noise
        if b not in self._graphs:
            self._graphs[b] = self._capture(b)
        graph = self._graphs[b]
        if graph is not None:
            graph.launch()
        else:
            self._enqueue(b)
        self.stream.synchronize()
        return buf.host_total.array[:b] / len(rows)

    def _capture(self, b: int):
        from .cuda import CudaError, Graph

        self._enqueue(b)  # warm-up: TensorRT allocates and initialises on its first enqueue
        self.stream.synchronize()
        try:
            with Graph.capture(self.stream) as graph:
                self._enqueue(b)
            return graph
        except (CudaError, RuntimeError) as e:
            warnings.warn(f"CUDA graph capture failed for batch {b} ({e}); running plain enqueues", stacklevel=2)
            return None

    def _enqueue(self, b: int) -> None:
        """Everything one call does, on the stream: what is captured, or run as is without a graph."""
        buf, s = self._buffers, self.stream
        T, B = self.model.tile, buf.max_batch
        maps = b * buf.map_bytes
        s.htod(buf.image.ptr, buf.host_image.ptr, b * T * T * 3)
        for i in range(buf.steps + 1):  # noise is (steps + 1, B, ...): the first b of each step
            offset = i * B * buf.map_bytes
            s.htod(buf.noise.at(offset), buf.host_noise.ptr + offset, maps)
        self._execute("condition", {"image": buf.image.ptr, **{n: d.ptr for n, d in buf.conds.items()}},
                      {"image": (b, T, T, 3)})
        s.zero(buf.total[0].ptr, maps)
        cond_shapes = {n: (b, *shape) for n, shape in self.model.conditions.items()}
        for i in range(buf.steps):
            x_in = buf.noise.ptr if i == 0 else buf.x[(i - 1) % 2].ptr
            self._execute("denoise_step",
                          {"x_t": x_in, "row": buf.rows.at(8 * i), "noise": buf.noise.at((i + 1) * B * buf.map_bytes),
                           **{n: d.ptr for n, d in buf.conds.items()},
                           "x_next": buf.x[i % 2].ptr, "prob": buf.prob.ptr, "edge": buf.edge.ptr},
                          {"x_t": (b, 1, T, T), "noise": (b, 1, T, T), **cond_shapes})
            self._execute(ACCUMULATE, {"total": buf.total[i % 2].ptr, "prob": buf.prob.ptr,
                                       "total_next": buf.total[(i + 1) % 2].ptr},
                          {"total": (b, 1, T, T), "prob": (b, 1, T, T)})
        s.dtoh(buf.host_total.ptr, buf.total[buf.steps % 2].ptr, maps)

    def _execute(self, name: str, addresses: dict[str, int], shapes: dict[str, tuple]) -> None:
        ctx = self.contexts[name]
        for tensor, shape in shapes.items():
            ctx.set_input_shape(tensor, shape)
        for tensor, ptr in addresses.items():
            ctx.set_tensor_address(tensor, ptr)
        if not ctx.execute_async_v3(self.stream.ptr):
            raise RuntimeError(f"TensorRT {name} engine: enqueue failed")
