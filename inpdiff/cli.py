"""`inpdiff`: synth, train, eval, export, calibrate, fp16, build."""
from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

from .numpy_sort import prefer_avx2_sort


def _synth(a: argparse.Namespace) -> int:
    from .data.synth import SynthConfig, synthesize

    cfg = SynthConfig(per_image=a.per_image, methods=tuple(a.methods.split(",")), all_methods=a.all_methods,
                      blends=tuple(a.blends.split(",")), posts=tuple(a.posts.split(",")),
                      pristine=not a.no_pristine, seed=a.seed, workers=a.workers, grain=a.grain,
                      max_frac=a.max_frac, shadows=a.shadows)
    records = synthesize(a.photos, a.out, cfg, progress=not a.quiet)
    print(f"{len(records)} samples in {a.out}")
    return 0


def _train_inpainter(a: argparse.Namespace) -> int:
    from .data.fills.learned import InpainterConfig, train_inpainter

    cfg = InpainterConfig(**{k: v for k, v in vars(a).items() if k in InpainterConfig.__dataclass_fields__})
    meta = train_inpainter(a.photos, a.out, cfg, log=(lambda s: None) if a.quiet else print)
    print(f"inpainter in {a.out}: {a.arch} width {a.width}, final loss {meta['final_loss']:.4f}, "
          f"{meta['steps_run']} steps, {meta['seconds']:.0f}s on {meta['device']}")
    return 0


def _train(a: argparse.Namespace) -> int:
    from .config import load_config
    from .training.train import train

    cfg = load_config(a.config).replace(a.set or [])
    result = train(cfg, a.out, resume=a.resume, progress=not a.quiet, stop_after=a.stop_after)
    print(f"best checkpoint: {a.out}/best (val pixel AUC + F1 = {result['best']:.3f})")
    return 0


def _lomo(a: argparse.Namespace) -> int:
    from .config import load_config
    from .training.lomo import leave_one_out, markdown

    cfg = load_config(a.config).replace(a.set or [])
    report = leave_one_out(cfg, a.families.split(","), a.out, a.data, a.limit, a.seed, progress=not a.quiet,
                           copies=not a.no_copies)
    print(markdown(report))
    return 0


def _eval(a: argparse.Namespace) -> int:
    from .data.datasets import discover, evenly
    from .evaluation import PERTURBATIONS, markdown, run_eval, runtime_predict

    perturbations = list(PERTURBATIONS) if a.robustness else ["clean"]
    if (Path(a.checkpoint) / "manifest.json").is_file():
        # An exported model folder: the shipped runtime (tiled, calibrated score and pixel threshold).
        from .runtime.localizer import LocalizeConfig

        config = LocalizeConfig(steps=a.steps, samples=a.samples or 1, seed=a.seed, copies=not a.no_copies,
                                max_tile=LocalizeConfig.max_tile if a.max_tile is None else a.max_tile, flips=a.flips)
        predict, loc = runtime_predict(a.checkpoint, a.threads, config=config)
        threshold, what = loc.mask_threshold, (f"runtime, ONNX Runtime, {loc.manifest.get('precision', 'fp32')}, "
                                               f"{loc.steps} step(s), {config.samples} sample(s)")
        make = lambda: predict  # noqa: E731
    else:
        import torch

        from .model import load_model
        from .training.evaluate import torch_predict

        if a.threads:
            torch.set_num_threads(a.threads)
        model = load_model(a.checkpoint, "cuda" if torch.cuda.is_available() else "cpu")
        threshold, what = 0.5, "PyTorch checkpoint, whole images, raw score"
        make = lambda: torch_predict(model, a.steps, a.samples, a.seed, copies=not a.no_copies)  # noqa: E731
    what += ", without the copy evidence" if a.no_copies else ", with the copy evidence"
    samples = evenly(discover(a.data), a.limit)
    report = run_eval(make, samples, a.out, perturbations, a.seed, threshold, progress=not a.quiet)
    print(json.dumps(report["summary"], indent=2) if a.json else
          f"{a.checkpoint} ({what}; F1 at {threshold:g})\n\n" + markdown(report["summary"]))
    for e in report["errors"]:
        print(f"skipped: {e}", file=sys.stderr)
    return 1 if report["errors"] else 0


def _export(a: argparse.Namespace) -> int:
    from .io import read_image
    from .export.onnx_export import ExportConfig, export

    images = [read_image(p) for p in a.check_image or []]
    cfg = ExportConfig(max_steps=a.max_steps, tile=a.tile, simplify=not a.no_simplify, check=not a.no_check)
    manifest = export(a.checkpoint, a.out, cfg, check_images=images)
    print(f"exported {a.checkpoint} -> {a.out}: " + ", ".join(manifest["files"]))
    if "parity" in manifest:
        p = manifest["parity"]
        print(f"parity with PyTorch on {p['tiles']} tiles: max abs error on x0 {p['max_abs_err_x0_per_step']:.1e} "
              f"per step, {p['max_abs_err_x0_sample']:.1e} over a {p['steps']}-step sample; TensorRT lint passed")
    return 0


def _calibrate(a: argparse.Namespace) -> int:
    from .calibration.qdq import CalibrateConfig
    from .calibration.quantize import calibrate

    cfg = CalibrateConfig(images=a.count, tiles_per_image=a.tiles_per_image, method=a.method,
                          percentile=a.percentile, exclude=tuple(a.exclude), exclude_sensitive=a.exclude_sensitive,
                          target=a.target, threads=a.threads)
    manifest = calibrate(a.model, a.out, a.images, cfg)
    q = manifest["quantization"]
    c = q["calibration"]
    print(f"INT8 model in {a.out}: {c['tiles']} tiles of {c['images']} images, steps {c['steps_covered']} "
          f"covered, method {q['method']}; kept in float: " + ", ".join(sum(q["kept_float"].values(), [])))
    for skipped in c["skipped"]:
        print(f"skipped: {skipped}", file=sys.stderr)
    if a.report:
        from .calibration.report import markdown, report

        print(markdown(report(a.model, a.out, cfg, a.report, a.limit)))
    return 0


def _fp16(a: argparse.Namespace) -> int:
    from .calibration.fp16 import Fp16Config, convert

    cfg = Fp16Config(images=a.count, exclude=tuple(a.exclude), threads=a.threads)
    manifest = convert(a.model, a.out, a.images, cfg)
    f = manifest["fp16"]
    print(f"FP16 model in {a.out} ({f['converter']}): " + "; ".join(
        f"{g}: {c['fp16']} compute ops fp16, {c['fp32']} fp32, {len(f['kept_fp32'][g])} nodes kept fp32 by rule"
        for g, c in f["compute_ops"].items()))
    if a.report:
        from .calibration.report import fp16_report, markdown

        print(markdown(fp16_report(a.model, a.out, a.report, a.limit, a.threads)))
    return 0


def _calibrate_score(a: argparse.Namespace) -> int:
    from .calibration.score import calibrate_score, markdown

    report = calibrate_score(a.model, a.data, a.limit, a.max_false_alarms, a.threads, max_marked_area=a.max_marked_area)
    print(markdown(report))
    print(f"written to {a.model}/manifest.json (\"score\") and {a.model}/score_report.json")
    return 0


def _build(a: argparse.Namespace) -> int:
    from .runtime.trt_build import BuildConfig, build

    model_dir = Path(a.model)
    if a.precision or not (model_dir / "manifest.json").is_file():
        from .make_model import MakeConfig, make_model

        target = make_model(a.model, MakeConfig(a.precision or "fp32", a.images, a.data, a.out))
        print(f"model folder: {target} (trt-localize --model {target})")
        return 0

    cfg = BuildConfig(max_batch=a.max_batch, opt_batch=a.opt_batch, workspace_mib=a.workspace_mib,
                      optimization_level=a.opt_level)
    metas = build(a.model, a.engines, cfg)
    meta = metas["condition"]
    print(f"{meta['precision']} engines for {meta['gpu']} (compute {meta['compute_capability']}), TensorRT "
          f"{meta['tensorrt']}, batch 1..{cfg.max_batch}: " + ", ".join(f"{n}.plan" for n in metas))
    if a.compare:
        from .calibration.engine_check import compare_engines

        agreed = compare_engines(a.model, a.engines or Path(a.model) / "engines", a.compare)
        print("ONNX Runtime vs TensorRT on recorded inputs: " + ", ".join(
            f"{g} {'agrees' if ok else 'DIFFERS'}" for g, ok in agreed.items()))
        return 0 if all(agreed.values()) else 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .calibration.qdq import TARGETS, CalibrateConfig
    from .data.fills import FAMILIES
    from .data.fills.learned import ARCHS, InpainterConfig
    from .runtime.cli import HelpFormatter, add_settings
    from .runtime.trt_build import BuildConfig

    p = argparse.ArgumentParser(prog="inpdiff", description="InpDiffusion: make data, train, evaluate, export, calibrate, build engines.")
    sub = p.add_subparsers(dest="command", required=True)
    add = functools.partial(sub.add_parser, formatter_class=HelpFormatter)  # --help shows each default

    s = add("synth", help="make inpainted image + mask pairs from pristine photos")
    s.add_argument("photos", nargs="+", help="folder(s) of pristine photos")
    s.add_argument("out", help="output folder (images/, masks/, samples.jsonl); existing samples are kept")
    s.add_argument("--per-image", type=int, default=6, help="masks per photo")
    s.add_argument("--methods", default="classical",
                   help="comma-separated fill methods or families: " + ", ".join(
                       f"{f} ({','.join(m)})" if m != (f,) else f for f, m in FAMILIES.items()))
    s.add_argument("--blends", default="none", help="blends drawn from per sample: none,poisson,feather")
    s.add_argument("--posts", default="none",
                   help="global post-processes drawn from per sample: none,jpeg,resize,resize2 "
                        "(jpeg: at the photo's own quality when it is a JPEG; resize2: before and after the edit)")
    s.add_argument("--grain", type=float, default=0.0, help="share of fills given grain at the photo's noise level")
    s.add_argument("--max-frac", type=float, default=0.30, help="largest mask, as a share of the image")
    s.add_argument("--shadows", type=float, default=0.0, help="share of masks extended by the object's cast shadow")
    s.add_argument("--all-methods", action="store_true", help="fill every mask with every method")
    s.add_argument("--no-pristine", action="store_true", help="do not write untouched copies")
    s.add_argument("--seed", type=int, default=0, help="same seed, same samples")
    s.add_argument("--workers", type=int, default=2, help="processes filling in parallel")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(fn=_synth)

    t = add("train", help="train a model; checkpoints go to OUT/best and OUT/last")
    t.add_argument("--config", default="edge-s", help="edge-s, paper, or a YAML file")
    t.add_argument("-o", "--out", required=True, help="run folder")
    t.add_argument("--set", nargs="*", metavar="SECTION.KEY=VALUE", help="override settings, e.g. train.epochs=5")
    t.add_argument("--resume", action="store_true", help="continue from OUT/last")
    t.add_argument("--stop-after", type=int, metavar="N", help="train N epochs now; --resume continues later")
    t.add_argument("--quiet", action="store_true", help="no progress bars (the per-epoch lines stay)")
    t.set_defaults(fn=_train)

    i = add("train-inpainter", help="train a CNN inpainter, used by synth as a learned fill method")
    i.add_argument("photos", help="folder of training photos (several: comma-separated)")
    i.add_argument("-o", "--out", required=True, help="checkpoint folder, e.g. models/inpainters/unet-w16")
    i.add_argument("--arch", choices=ARCHS, default=InpainterConfig.arch, help="network design")
    i.add_argument("--adversarial", action="store_true", help="add a PatchGAN hinge loss and feature matching")
    add_settings(i, InpainterConfig, {
        "width": "channels of the first level", "blocks": "ffc: residual Fourier blocks",
        "latent": "ae8: latent channels", "adv_start": "share of the run on L1 alone before the adversarial loss joins",
        "crop": "training crop size", "batch": "crops per step", "steps": "training steps (unless --seconds)",
        "seconds": "train for this wall time instead of --steps", "max_frac": "largest hole, as a share of the crop",
        "lr": "peak learning rate", "seed": "seed of crops, masks and weights", "threads": "CPU threads"})
    i.add_argument("--quiet", action="store_true", help="no progress lines")
    i.set_defaults(fn=_train_inpainter)

    e = add("eval", help="evaluate a checkpoint on a dataset folder")
    e.add_argument("checkpoint", help="an exported model folder (manifest.json: scored as trt-localize runs it) or a "
                   "checkpoint folder (model.safetensors + config.json: PyTorch, whole images)")
    e.add_argument("data", help="dataset folder (images/+masks/, Tp/+Gt/, or METHOD/ folders)")
    e.add_argument("-o", "--out", help="write OUT.json and OUT.md")
    e.add_argument("--robustness", action="store_true", help="also JPEG 90/75/50, noise, blur, resize 0.75/0.5")
    e.add_argument("--steps", type=int, help="sampling steps (default: the config's)")
    e.add_argument("--samples", type=int, help="ensemble size (default: the config's)")
    e.add_argument("--limit", type=int, default=0, help="evaluate an evenly spread subset of this size")
    e.add_argument("--seed", type=int, default=0, help="sampling seed (a checkpoint's diffusion)")
    e.add_argument("--no-copies", action="store_true", help="the network's map alone, without the copy evidence")
    e.add_argument("--max-tile", type=int, help="an exported model folder: largest tile side, as trt-localize's "
                                                "(0: the model's own tile)")
    e.add_argument("--flips", type=int, default=1, choices=(1, 2, 4, 8),
                   help="an exported model folder: tiles also run mirrored (and transposed), maps averaged, as trt-localize's")
    e.add_argument("--threads", type=int, default=0, help="torch CPU threads")
    e.add_argument("--json", action="store_true", help="print the summary as JSON")
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    e.set_defaults(fn=_eval)

    lo = add("lomo", help="leave-one-family-out: train without each fill family, test on it")
    lo.add_argument("--config", default="edge-s", help="edge-s, paper, or a YAML file")
    lo.add_argument("--set", nargs="*", metavar="SECTION.KEY=VALUE", help="override settings")
    # Every family but those that only teach: latent-own, the project's second decoder, which stays in training
    # when latent is held out, and G'MIC's two other commands, which the validation sets do not hold.
    lo.add_argument("--families", default=",".join(f for f in FAMILIES if f not in ("latent-own", "gmic-matchpatch",
                                                                                     "gmic-pde")),
                    help="comma-separated fill families, each held out in turn")
    lo.add_argument("--data", required=True, help="test set(s) with every family, comma-separated (synth --all-methods)")
    lo.add_argument("-o", "--out", required=True, help="protocol folder: one run per held-out family")
    lo.add_argument("--limit", type=int, default=0, help="test on an evenly spread subset of this size")
    lo.add_argument("--seed", type=int, default=0, help="training and sampling seed")
    lo.add_argument("--no-copies", action="store_true", help="score the networks alone, without the copy evidence")
    lo.add_argument("--quiet", action="store_true", help="no progress bars")
    lo.set_defaults(fn=_lomo)

    x = add("export", help="export a checkpoint to condition.onnx + denoise_step.onnx + manifest.json")
    x.add_argument("checkpoint", help="checkpoint folder (model.safetensors + config.json)")
    x.add_argument("-o", "--out", required=True, help="output model folder, e.g. models/NAME")
    x.add_argument("--max-steps", type=int, default=32, help="largest --steps the runtime may ask for")
    x.add_argument("--tile", type=int, help="spatial size of the graphs (multiple of 32; default: the config's)")
    x.add_argument("--check-image", nargs="*", help="real images for the parity check (besides random ones)")
    x.add_argument("--no-simplify", action="store_true", help="skip onnx-simplifier")
    x.add_argument("--no-check", action="store_true", help="skip the parity check and the TensorRT lint")
    x.set_defaults(fn=_export)

    c = add("calibrate", help="INT8 Q/DQ versions of an FP32 export, from real calibration images")
    c.add_argument("model", help="the FP32 model folder (from `inpdiff export`)")
    c.add_argument("-o", "--out", required=True, help="the INT8 model folder to write, e.g. models/NAME-int8")
    c.add_argument("--images", help="calibration images (a folder, walked); not needed when OUT holds the cache")
    c.add_argument("--count", type=int, default=256, help="calibration images to use, at most")
    add_settings(c, CalibrateConfig, {"tiles_per_image": "tiles drawn from each image"})
    c.add_argument("--method", default="entropy", choices=("entropy", "minmax", "percentile"), help="range calibration")
    add_settings(c, CalibrateConfig, {"percentile": "with --method percentile"})
    c.add_argument("--target", choices=TARGETS, default=CalibrateConfig.target,
                   help="tensorrt: symmetric int8, for TensorRT engines; cpu: uint8 activations, for ONNX Runtime's "
                        "VNNI and ARM dot-product kernels (TensorRT refuses it)")
    c.add_argument("--exclude", nargs="*", default=[], metavar="NODE", help="nodes to keep in float")
    add_settings(c, CalibrateConfig, {"exclude_sensitive": "also keep in float this many layers, those that cost "
                                                            "most when quantized alone (0: none)"})
    c.add_argument("--report", metavar="DATA", help="then compare FP32, plain INT8 and this INT8 on a dataset")
    c.add_argument("--limit", type=int, default=0, help="evaluate an evenly spread subset of DATA of this size")
    c.add_argument("--threads", type=int, default=0, help="CPU threads (0: all cores)")
    c.set_defaults(fn=_calibrate)

    h = add("fp16", help="FP16 versions of an FP32 export (I/O and sensitive ops stay fp32)")
    h.add_argument("model", help="the FP32 model folder (from `inpdiff export`)")
    h.add_argument("-o", "--out", required=True, help="the FP16 model folder to write, e.g. models/NAME-fp16")
    h.add_argument("--images", required=True, help="reference images (a folder, walked) for the value ranges")
    h.add_argument("--count", type=int, default=8, help="reference images to use, at most")
    h.add_argument("--exclude", nargs="*", default=[], metavar="NODE", help="more nodes to keep in fp32")
    h.add_argument("--report", metavar="DATA", help="then compare FP32 and FP16 on a dataset")
    h.add_argument("--limit", type=int, default=0, help="evaluate an evenly spread subset of DATA of this size")
    h.add_argument("--threads", type=int, default=0, help="CPU threads (0: all cores)")
    h.set_defaults(fn=_fp16)

    sc = add("calibrate-score", help="calibrated image-level score, its threshold, and the mask threshold")
    sc.add_argument("model", help="a model folder; its manifest gets the calibration")
    sc.add_argument("--data", required=True, help="validation set with inpainted and pristine images")
    sc.add_argument("--max-false-alarms", type=float, default=0.05, help="share of pristine images flagged")
    sc.add_argument("--max-marked-area", type=float, default=0.01,
                    help="mean share of a pristine photo marked, which sets the mask threshold")
    sc.add_argument("--limit", type=int, default=0, help="an evenly spread subset of DATA of this size")
    sc.add_argument("--threads", type=int, default=0, help="CPU threads (0: all cores)")
    sc.set_defaults(fn=_calibrate_score)

    b = add("build", help="from a checkpoint to engines in one go (with --precision), or TensorRT engines "
                       "of a model folder (precision from its ONNX)")
    b.add_argument("model", help="a checkpoint folder, or a model folder (from export, fp16 or calibrate)")
    b.add_argument("--precision", choices=("fp32", "fp16", "int8", "int8-cpu"),
                   help="export, INT8 calibration or FP16 conversion, score calibration and engines, each only "
                        "where not up to date")
    b.add_argument("--images", metavar="DIR", help="with --precision int8/fp16: photos to calibrate on")
    b.add_argument("--data", metavar="DIR", help="with --precision: a validation set for the score calibration")
    b.add_argument("-o", "--out", metavar="DIR", help="with --precision int8/fp16: the folder (default MODEL-PRECISION)")
    b.add_argument("--engines", metavar="DIR", help="where the engines go (default: MODEL/engines)")
    add_settings(b, BuildConfig, {"max_batch": "largest tiles x samples per call",
                                  "opt_batch": "the batch the kernels are tuned for",
                                  "workspace_mib": "builder scratch memory"})
    b.add_argument("--opt-level", type=int, default=3, choices=range(6), help="builder optimisation level")
    b.add_argument("--compare", metavar="IMAGES", help="then compare ONNX Runtime with the engines on the graphs' "
                   "recorded inputs from these photos (Polygraphy's comparator); exit 1 if they differ")
    b.set_defaults(fn=_build)
    return p


def main(argv: list[str] | None = None) -> int:
    prefer_avx2_sort()  # before the commands import numpy: the copy evidence of `eval` sorts
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (FileNotFoundError, ValueError) as e:
        print(f"inpdiff {args.command}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"inpdiff {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
