"""TensorRT: engine build (`inpdiff build`), the metadata beside each engine, and the backend
`tensorrt`. All of the project's TensorRT code is here, and `tensorrt` is imported only when an
engine is built or run, so everything else works without it.

Build. Strongly typed networks: every tensor's type comes from the ONNX (FP32, FP16 from `inpdiff
fp16`, INT8 Q/DQ from `inpdiff calibrate`), which is the one path that works on TensorRT 10.x
(JetPack 6 ships 10.3; the flag is needed there) and on 11.x (which removed the FP16/INT8 builder
flags and implicit calibration, and ignores the flag). One optimisation profile per engine covers
batch 1 .. max_batch (optimised for opt_batch); the timing cache is saved beside the engines and
reused by the next build. A third, tiny engine built from the network API adds each step's
probability map to a running sum on the GPU, so that the whole call stays on the device.

Metadata. Each `NAME.plan` has `NAME.json` beside it: TensorRT version, GPU name and compute
capability, the ONNX file's sha256, precision, profiles, the plan's sha256. An engine runs only on
the TensorRT and GPU it was built for, and only matches the ONNX it was built from; a mismatch is
refused at load with the command that rebuilds (`--build-missing` rebuilds instead).

Run. Static device buffers for the largest batch, one stream, one execution context per engine.
The whole call (copy of the pinned host tiles and noise, the condition engine, 10 denoising steps
with their sums, the copy back) is captured as one CUDA graph per batch size, after one warm-up
enqueue; fresh noise for each call is written into the pinned host buffer that the captured copy
reads, so replays stay stochastic and seeded runs reproducible. If capture fails, the same
enqueues run without a graph, with a warning (as trtexec does).
"""
from __future__ import annotations

import json
import threading
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..data.io import atomic_write, sha256
from .model_dir import ModelError, load_manifest

GRAPHS = ("condition", "denoise_step")
ACCUMULATE = "accumulate"  # running sum of the per-step probability maps
ENGINES = (*GRAPHS, ACCUMULATE)


class EngineError(ModelError):
    """No usable engine: TensorRT missing, engines missing or built for something else."""


@dataclass
class BuildConfig:
    max_batch: int = 16             # largest tiles x samples per call the engines accept
    opt_batch: int = 8              # the batch size the kernels are tuned for
    workspace_mib: int = 2048       # builder scratch memory limit
    optimization_level: int = 3     # TensorRT's builder optimisation level (0..5)


@dataclass(frozen=True)
class Target:
    """What an engine is bound to."""
    tensorrt: str
    gpu: str
    compute_capability: str


def import_tensorrt():
    try:
        import tensorrt
    except ImportError as e:
        raise EngineError("TensorRT is not installed (the Python package `tensorrt` cannot be imported: "
                          f"{e}). On a machine with an NVIDIA GPU: pip install 'inpdiff[trt]' (or JetPack's "
                          "python3-libnvinfer on Jetson). Without it, trt-localize runs on ONNX Runtime "
                          "(--backend onnxruntime)") from e
    return tensorrt


def current_target() -> Target:
    trt = import_tensorrt()
    from .cuda import device_count, device_properties

    if device_count() == 0:
        raise EngineError("no CUDA GPU is visible (or cuda-python is missing: pip install 'inpdiff[trt]'); "
                          "TensorRT engines need one; use --backend onnxruntime")
    gpu, cc = device_properties(0)
    return Target(trt.__version__, gpu, cc)


def profiles(manifest: dict, max_batch: int, opt_batch: int) -> dict[str, dict[str, list[list[int]]]]:
    """Per engine, per dynamic input: [min, opt, max] shapes for batch 1 .. max_batch."""
    if max_batch < 1:
        raise ValueError(f"max batch must be at least 1, got {max_batch}")
    opt = min(max(1, opt_batch), max_batch)
    T = int(manifest["tile"])

    def batched(*shape: int) -> list[list[int]]:
        return [[b, *shape] for b in (1, opt, max_batch)]

    conds = {name: batched(*shape) for name, shape in manifest["conditions"].items()}
    return {"condition": {"image": batched(T, T, 3)},
            "denoise_step": {"x_t": batched(1, T, T), "noise": batched(1, T, T), **conds},
            ACCUMULATE: {"total": batched(1, T, T), "prob": batched(1, T, T)}}


def engine_files(engines_dir: Path, name: str) -> tuple[Path, Path]:
    return engines_dir / f"{name}.plan", engines_dir / f"{name}.json"


def expected_metadata(manifest: dict, name: str, target: Target) -> dict:
    """The fields an engine's metadata must have to be used with this model on this machine."""
    onnx = f"{name}.onnx" if name in GRAPHS else None
    return {"engine": name, "tensorrt": target.tensorrt, "gpu": target.gpu,
            "compute_capability": target.compute_capability, "onnx": onnx,
            "onnx_sha256": manifest["files"][onnx] if onnx else None,
            "precision": manifest.get("precision", "fp32")}


def engine_problems(model_dir: Path, engines_dir: Path, target: Target) -> list[str]:
    """Why the engines in `engines_dir` cannot run `model_dir` here; empty when they can."""
    manifest = load_manifest(model_dir, verify=False)
    problems = []
    for name in ENGINES:
        plan, meta_path = engine_files(engines_dir, name)
        if not plan.is_file() or not meta_path.is_file():
            problems.append(f"{plan.name}: not built")
            continue
        try:
            meta = json.loads(meta_path.read_text())
        except ValueError as e:
            problems.append(f"{meta_path.name}: unreadable ({e})")
            continue
        expected = expected_metadata(manifest, name, target)
        what = {"tensorrt": "TensorRT", "gpu": "GPU", "compute_capability": "compute capability",
                "onnx_sha256": "ONNX sha256", "precision": "precision"}
        for key, label in what.items():
            if meta.get(key) != expected[key]:
                problems.append(f"{plan.name}: built for {label} {meta.get(key)}, this is {expected[key]}")
        if meta.get("plan_sha256") != sha256(plan):
            problems.append(f"{plan.name}: does not match its metadata's sha256 (changed or truncated)")
    return problems


def check_engines(model_dir: Path, engines_dir: Path, target: Target) -> dict[str, dict]:
    problems = engine_problems(model_dir, engines_dir, target)
    if problems:
        raise EngineError(f"{engines_dir}: TensorRT engines cannot be used here: " + "; ".join(problems)
                          + f". Rebuild them: inpdiff build {model_dir} --engines {engines_dir} "
                          "(or run trt-localize with --build-missing)")
    return {n: json.loads(engine_files(engines_dir, n)[1].read_text()) for n in ENGINES}


def build(model_dir: str | Path, engines_dir: str | Path | None = None, cfg: BuildConfig | None = None,
          log=print) -> dict[str, dict]:
    """Build the three engines of `model_dir` into `engines_dir` (default MODEL_DIR/engines)."""
    trt = import_tensorrt()
    cfg = cfg or BuildConfig()
    model_dir = Path(model_dir)
    engines_dir = Path(engines_dir) if engines_dir else model_dir / "engines"
    manifest = load_manifest(model_dir)
    target = current_target()
    shapes = profiles(manifest, cfg.max_batch, cfg.opt_batch)
    engines_dir.mkdir(parents=True, exist_ok=True)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    cache_path = engines_dir / "timing.cache"
    timing_cache = None
    metas = {}
    for name in ENGINES:
        t0 = time.perf_counter()
        network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
        if name == ACCUMULATE:
            _accumulate_network(trt, network, int(manifest["tile"]))
        else:
            parser = trt.OnnxParser(network, logger)
            if not parser.parse_from_file(str(model_dir / f"{name}.onnx")):
                errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
                raise EngineError(f"{model_dir / name}.onnx: TensorRT's ONNX parser failed: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, cfg.workspace_mib << 20)
        config.builder_optimization_level = cfg.optimization_level
        if timing_cache is None:
            timing_cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
        config.set_timing_cache(timing_cache, False)
        profile = builder.create_optimization_profile()
        for tensor, (lo, opt, hi) in shapes[name].items():
            profile.set_shape(tensor, lo, opt, hi)
        config.add_optimization_profile(profile)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise EngineError(f"{name}: TensorRT could not build the engine (see its log above)")
        path, meta_path = engine_files(engines_dir, name)
        atomic_write(path, lambda p, data=plan: p.write_bytes(bytes(data)))
        meta = {**expected_metadata(manifest, name, target), "plan_sha256": sha256(path),
                "profiles": shapes[name], "build": asdict(cfg), "model": str(model_dir),
                "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        atomic_write(meta_path, lambda p, text=json.dumps(meta, indent=1): p.write_text(text))
        metas[name] = meta
        log(f"{path}: built in {time.perf_counter() - t0:.1f}s")
    serialized = timing_cache.serialize()
    atomic_write(cache_path, lambda p: p.write_bytes(bytes(serialized)))
    return metas


def _accumulate_network(trt, network, tile: int) -> None:
    total = network.add_input("total", trt.float32, (-1, 1, tile, tile))
    prob = network.add_input("prob", trt.float32, (-1, 1, tile, tile))
    out = network.add_elementwise(total, prob, trt.ElementWiseOperation.SUM).get_output(0)
    out.name = "total_next"
    network.mark_output(out)


class _Buffers:
    """Device and pinned host memory for calls of up to `max_batch` tiles and `steps` steps."""

    def __init__(self, manifest: dict, max_batch: int, steps: int, rows: list[int], stream):
        from .cuda import DeviceBuffer, HostBuffer

        T, B = int(manifest["tile"]), max_batch
        self.map_bytes = T * T * 4                 # one (1, T, T) float32 map
        self.host_image = HostBuffer((B, T, T, 3), np.uint8)
        self.host_noise = HostBuffer((steps + 1, B, 1, T, T), np.float32)
        self.host_total = HostBuffer((B, 1, T, T), np.float32)
        self.host_rows = HostBuffer((steps,), np.int64)
        self.host_rows.array[:] = rows
        self.image = DeviceBuffer(self.host_image.nbytes)
        self.noise = DeviceBuffer(self.host_noise.nbytes)
        self.rows = DeviceBuffer(self.host_rows.nbytes)
        self.conds = {n: DeviceBuffer(B * int(np.prod(s)) * 4) for n, s in manifest["conditions"].items()}
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
        self.manifest = load_manifest(self.model_dir, verify=False)
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
        self.name = f"tensorrt-{self.manifest.get('precision', 'fp32')}"
        self._buffers: _Buffers | None = None
        self._graphs: dict[int, object] = {}  # batch size -> Graph, or None where capture failed
        self._lock = threading.Lock()  # one call at a time: the buffers are shared

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
            buf = self._buffers = _Buffers(self.manifest, self.max_batch, len(rows), rows, self.stream)
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
        T, B = int(self.manifest["tile"]), buf.max_batch
        maps = b * buf.map_bytes
        s.htod(buf.image.ptr, buf.host_image.ptr, b * T * T * 3)
        for i in range(buf.steps + 1):  # noise is (steps + 1, B, ...): the first b of each step
            offset = i * B * buf.map_bytes
            s.htod(buf.noise.at(offset), buf.host_noise.ptr + offset, maps)
        self._execute("condition", {"image": buf.image.ptr, **{n: d.ptr for n, d in buf.conds.items()}},
                      {"image": (b, T, T, 3)})
        s.zero(buf.total[0].ptr, maps)
        cond_shapes = {n: (b, *shape) for n, shape in self.manifest["conditions"].items()}
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
