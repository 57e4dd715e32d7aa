"""`inpdiff build MODEL --compare IMAGES`: ONNX Runtime against the built TensorRT engines, per graph,
with Polygraphy's comparator, on the inputs the graphs really see: real image tiles and the step
graph's inputs at every denoising step, recorded from the runtime's own sampling loop (collect.py).
Random inputs would miss what matters for FP16 and INT8: the activations real photos produce."""
from __future__ import annotations

from pathlib import Path

from ..runtime.engines import engine_files
from ..sampling import GRAPHS, onnx_file
from .collect import CalibrationError, Collected, chunks, find_images, recording_localizer


def compare_engines(model_dir: str | Path, engines_dir: str | Path, images_dir: str | Path, images: int = 4,
                    atol: float = 1e-2, rtol: float = 1e-2) -> dict[str, bool]:
    """{graph: whether every output agreed within atol/rtol on every recorded feed}."""
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner
    from polygraphy.comparator import Comparator, CompareFunc

    model_dir, engines_dir = Path(model_dir), Path(engines_dir)
    # Recorded from the FP32-or-not model folder itself: each precision is compared with its own ONNX.
    localizer = recording_localizer(model_dir, require_score=False)
    recorder = next(chunks(localizer, find_images(images_dir, images, 0), 2, images, 0, Collected()), None)
    localizer.close()
    if recorder is None:
        raise CalibrationError(f"{images_dir}: no readable image to record the graphs' inputs from")
    feeds = {"condition": recorder.condition_feeds, "denoise_step": recorder.step_feeds}
    agreed = {}
    for g in GRAPHS:
        onnx_runner = OnnxrtRunner(SessionFromOnnx(str(model_dir / onnx_file(g)), providers=["CPUExecutionProvider"]))
        trt_runner = TrtRunner(EngineFromBytes(engine_files(engines_dir, g)[0].read_bytes()))
        results = Comparator.run([onnx_runner, trt_runner], data_loader=feeds[g])
        agreed[g] = bool(Comparator.compare_accuracy(results, compare_func=CompareFunc.simple(atol=atol, rtol=rtol)))
    return agreed
