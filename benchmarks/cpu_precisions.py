"""FP32 against the INT8 and FP16 model folders on this CPU (prints a Markdown table).

Per model folder: each graph's time for two tiles on one thread (the pipeline's unit of work), and
`trt-localize` on a 2048x2048 photo from process start to written outputs, with its peak RSS (GNU
time's %M). Run from the repository root:
python benchmarks/cpu_precisions.py [models/edge-c models/edge-c-int8 models/edge-c-int8-cpu ...]
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inpdiff import sampling  # noqa: E402
from inpdiff.io import read_image  # noqa: E402
from inpdiff.runtime.model_dir import ModelDir  # noqa: E402

EXAMPLE = ROOT / "examples" / "images" / "astronaut_00_telea.png"
MODELS = ("edge-c", "edge-c-int8", "edge-c-int8-cpu", "edge-c-fp16")


def best_ms(fn, repeat: int = 5) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times) * 1000


def graph_ms(model: Path, tiles: np.ndarray) -> tuple[float, float]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    cond, step = (ort.InferenceSession(str(model / sampling.onnx_file(g)), opts) for g in sampling.GRAPHS)
    conds = dict(zip([o.name for o in cond.get_outputs()], cond.run(None, {sampling.IMAGE: tiles})))
    x = np.zeros((len(tiles), 1, tiles.shape[1], tiles.shape[2]), np.float32)
    m = ModelDir.load(model, verify=False)
    row = sampling.step_rows(m.mode, 1, m.max_steps)[0]
    return (best_ms(lambda: cond.run(None, {sampling.IMAGE: tiles})),
            best_ms(lambda: step.run(None, sampling.step_feed(x, row, x, conds))))


def end_to_end(model: Path, photo: Path, out: Path, repeat: int = 2) -> tuple[list[float], float]:
    runs, rss = [], 0.0
    for _ in range(repeat):
        t = time.perf_counter()
        r = subprocess.run(["/usr/bin/time", "-f", "%M", sys.executable, "-m", "inpdiff.runtime.launch", str(photo), "-o",
                            str(out), "--quiet", "--restart", "--no-html", "--model", str(model)],
                           capture_output=True, text=True, cwd=ROOT)
        runs.append(time.perf_counter() - t)
        assert r.returncode == 0, r.stderr
        rss = max(rss, int(r.stderr.strip().splitlines()[-1]) / 1024)
    return runs, rss


def main() -> None:
    models = [Path(m) for m in sys.argv[1:]] or [ROOT / "models" / m for m in MODELS]
    image = read_image(EXAMPLE)
    tiles = np.ascontiguousarray(np.stack([image[:256, :256], image[256:, 256:]]))
    work = Path(tempfile.mkdtemp())
    photo = work / "photo_2048.png"
    cv2.imwrite(str(photo), cv2.resize(image, (2048, 2048), interpolation=cv2.INTER_CUBIC)[:, :, ::-1])
    print("| model | condition graph, 2 tiles, 1 thread | step graph, 2 tiles, 1 thread | "
          "`trt-localize` on a 2048x2048 photo (runs) | peak RSS |\n|---|---|---|---|---|")
    for model in models:
        cond, step = graph_ms(model, tiles)
        runs, rss = end_to_end(model, photo, work / "out")
        print(f"| {model.name} | {cond:.1f} ms | {step:.1f} ms | {', '.join(f'{r:.2f}' for r in runs)} s | {rss:.0f} MB |")


if __name__ == "__main__":
    main()
