"""`inpdiff build`: TensorRT engines of a model folder, built with Polygraphy's loaders as TensorRT's
own demos build them (network from ONNX, a config with one optimisation profile, a timing cache).

Strongly typed networks: every tensor's type comes from the ONNX (FP32, FP16 from `inpdiff fp16`,
INT8 Q/DQ from `inpdiff calibrate`), which is the one path that works on TensorRT 10.x (JetPack 6
ships 10.3; the flag is needed there) and on 11.x (which removed the FP16/INT8 builder flags and
implicit calibration). One profile per engine covers batch 1 .. max_batch (optimised for
opt_batch); the timing cache beside the engines is reused by the next build. A third, tiny engine
built from the network API adds each step's probability map to a running sum on the GPU, so that
the whole call stays on the device. It lives in the runtime because `trt-localize --build-missing`
builds too.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..io import atomic_write, sha256
from .engines import (ACCUMULATE, ENGINES, EngineError, current_target, engine_files, expected_metadata,
                      import_tensorrt, profiles)
from .model_dir import ModelDir


@dataclass
class BuildConfig:
    max_batch: int = 16             # largest tiles x samples per call the engines accept
    opt_batch: int = 8              # the batch size the kernels are tuned for
    workspace_mib: int = 2048       # builder scratch memory limit
    optimization_level: int = 3     # TensorRT's builder optimisation level (0..5)


def build(model_dir: str | Path, engines_dir: str | Path | None = None, cfg: BuildConfig | None = None,
          log=print) -> dict[str, dict]:
    """Build the three engines of `model_dir` into `engines_dir` (default MODEL_DIR/engines)."""
    model_dir = Path(model_dir)
    model = ModelDir.load(model_dir)
    if model.manifest.get("quantization", {}).get("target") == "cpu":
        raise EngineError(f"{model_dir}: a CPU INT8 model (uint8 activations with zero points), which TensorRT "
                          "cannot build; build from the TensorRT INT8 folder (inpdiff calibrate --target tensorrt)")
    trt = import_tensorrt()
    from polygraphy.backend.trt import CreateConfig, NetworkFromOnnxPath, Profile, engine_bytes_from_network
    from polygraphy.exception import PolygraphyException

    cfg = cfg or BuildConfig()
    engines_dir = Path(engines_dir) if engines_dir else model_dir / "engines"
    target = current_target()
    shapes = profiles(model, cfg.max_batch, cfg.opt_batch)
    engines_dir.mkdir(parents=True, exist_ok=True)
    cache, fresh_cache = engines_dir / "timing.cache", engines_dir / ".timing.cache.tmp"
    metas = {}
    for name in ENGINES:
        t0 = time.perf_counter()
        if name == ACCUMULATE:
            network = _accumulate_network(trt, model.tile)
        else:
            network = NetworkFromOnnxPath(str(model_dir / f"{name}.onnx"), strongly_typed=True)
        profile = Profile()
        for tensor, (lo, opt, hi) in shapes[name].items():
            profile.add(tensor, lo, opt, hi)
        config = CreateConfig(profiles=[profile], builder_optimization_level=cfg.optimization_level,
                              memory_pool_limits={trt.MemoryPoolType.WORKSPACE: cfg.workspace_mib << 20},
                              load_timing_cache=str(cache) if cache.is_file() else None)
        try:
            plan = engine_bytes_from_network(network, config, save_timing_cache=str(fresh_cache))
        except PolygraphyException as e:
            raise EngineError(f"{model_dir / name}: TensorRT could not build the engine: {e}") from e
        fresh_cache.replace(cache)  # a half-written cache is never left for the next build to read
        path, meta_path = engine_files(engines_dir, name)
        atomic_write(path, lambda p, data=plan: p.write_bytes(bytes(data)))
        meta = {**expected_metadata(model, name, target), "plan_sha256": sha256(path),
                "profiles": shapes[name], "build": asdict(cfg), "model": str(model_dir),
                "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        atomic_write(meta_path, lambda p, text=json.dumps(meta, indent=1): p.write_text(text))
        metas[name] = meta
        log(f"{path}: built in {time.perf_counter() - t0:.1f}s")
    return metas


def _accumulate_network(trt, tile: int):
    """(builder, network): total_next = total + prob, strongly typed, for Polygraphy's build."""
    from polygraphy.backend.trt import CreateNetwork

    builder, network = CreateNetwork(strongly_typed=True)()
    total = network.add_input("total", trt.float32, (-1, 1, tile, tile))
    prob = network.add_input("prob", trt.float32, (-1, 1, tile, tile))
    out = network.add_elementwise(total, prob, trt.ElementWiseOperation.SUM).get_output(0)
    out.name = "total_next"
    network.mark_output(out)
    return builder, network
