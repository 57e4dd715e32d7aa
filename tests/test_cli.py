import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "models" / "edge-c"
EXAMPLES = ROOT / "examples"


def run(*args, timeout=600, cwd=ROOT, env_extra=None, **kw):
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env_extra or {})}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd, **kw)


def test_synth_command(photos_dir, tmp_path):
    r = run("-m", "inpdiff.cli", "synth", str(photos_dir), str(tmp_path / "out"), "--per-image", "1",
            "--methods", "telea", "--workers", "1", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "12 samples" in r.stdout
    assert len(list((tmp_path / "out" / "masks").glob("*.png"))) == 12


def test_bad_usage_gets_a_clear_message_and_exit_2(tmp_path):
    r = run("-m", "inpdiff.cli", "eval", str(tmp_path / "nope"), str(tmp_path))
    assert r.returncode == 2 and "nope: no such folder" in r.stderr
    r = run("-m", "inpdiff.cli", "train", "-o", str(tmp_path / "run"), "--set", "train.epochz=1")
    assert r.returncode == 2 and "unknown setting 'epochz'" in r.stderr
    r = run("-m", "inpdiff.cli", "synth", str(tmp_path), str(tmp_path / "o"), "--methods", "magic")
    assert r.returncode == 2 and "unknown fill method 'magic'" in r.stderr


def test_a_missing_fill_tool_stops_synth_with_its_package_and_exit_2(photos_dir, tmp_path):
    (tmp_path / "bin").mkdir()  # a PATH on which GIMP is not found
    r = run("-m", "inpdiff.cli", "synth", str(photos_dir), str(tmp_path / "out"), "--per-image", "1",
            "--methods", "gimp-clone", "--workers", "1", "--quiet", env_extra={"PATH": str(tmp_path / "bin")})
    assert r.returncode == 2, r.stderr
    assert "fill method 'gimp-clone' needs GIMP: apt-get install gimp" in r.stderr and "Traceback" not in r.stderr
    assert not list((tmp_path / "out" / "images").glob("*gimp*"))


def test_torchrun_ddp_training(tiny_cfg, tmp_path):
    cfg_path = tmp_path / "tiny.json"
    cfg_path.write_text(json.dumps(tiny_cfg.replace(["train.epochs=1", "train.batch_size=2"]).to_dict()))
    r = run("-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533", "-m", "inpdiff.cli",
            "train", "--config", str(cfg_path), "-o", str(tmp_path / "ddp"), "--quiet")
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "ddp" / "best" / "model.safetensors").is_file()
    assert r.stdout.count('"epoch": 1') == 1  # only rank 0 validates and reports


def test_runtime_imports_without_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import inpdiff.runtime, inpdiff.runtime.cli, inpdiff.io, inpdiff.config\n"
            "cfg = inpdiff.config.Config.from_dict(inpdiff.config.Config().to_dict())\n"
            "assert 'torch' not in [m for m, v in sys.modules.items() if v is not None]\n"
            "print(cfg.name)")
    r = run("-c", code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "edge-s"


def test_eval_of_a_model_folder_runs_the_steps_and_samples_asked_for(tiny_export, tiny_dataset):
    # They were once ignored for exported folders, silently scoring the model's defaults.
    r = run("-m", "inpdiff.cli", "eval", str(tiny_export[0] / "onnx"), str(tiny_dataset), "--steps", "3",
            "--samples", "2", "--limit", "2", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "3 step(s), 2 sample(s)" in r.stdout


@pytest.mark.skipif(not (SHIPPED / "manifest.json").is_file(), reason="no shipped model under models/edge-c")
def test_readme_main_command_localizes_the_example(tmp_path):
    # trt-localize with the shipped model (no --model), scored against the example's ground truth.
    import cv2

    from inpdiff.metrics import pixel_metrics

    r = run("-m", "inpdiff.runtime.cli", str(EXAMPLES / "images" / "astronaut_00_telea.png"), "-o", str(tmp_path))
    assert r.returncode == 0, r.stderr
    prob = cv2.imread(str(tmp_path / "astronaut_00_telea.prob.png"), cv2.IMREAD_GRAYSCALE) / 255.0
    gt = cv2.imread(str(EXAMPLES / "masks" / "astronaut_00_telea.png"), cv2.IMREAD_GRAYSCALE) > 127
    m = pixel_metrics(prob, gt)
    assert m["pixel_auc"] > 0.9 and m["f1"] > 0.55  # measured: 0.984 and 0.701 (edge-c)


@pytest.mark.skipif(not (SHIPPED / "manifest.json").is_file(), reason="no shipped model under models/edge-c")
def test_a_shipped_model_is_named_without_its_path(tmp_path):
    """--model edge-c-int8-cpu from any working folder: the shipped folder, wherever pip put it; an unknown
    name lists the shipped ones (exit 2)."""
    image = str(EXAMPLES / "images" / "astronaut_00_telea.png")
    r = run("-m", "inpdiff.runtime.cli", image, "-o", str(tmp_path / "out"), "--model", "edge-c-int8-cpu", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    manifest = json.loads((SHIPPED.parent / "edge-c-int8-cpu" / "manifest.json").read_text())
    assert json.loads((tmp_path / "out" / ".trt-localize.json").read_text())["model"] == manifest["files"]
    r = run("-m", "inpdiff.runtime.cli", image, "-o", str(tmp_path / "out2"), "--model", "edge-x", cwd=tmp_path)
    assert r.returncode == 2 and "edge-x: no such model folder" in r.stderr and "edge-c-int8-cpu" in r.stderr


def test_help_shows_every_option_with_its_default():
    import argparse

    from inpdiff.cli import build_parser as inpdiff_parser
    from inpdiff.runtime.cli import build_parser

    parsers = [build_parser()] + [sub for a in inpdiff_parser()._actions if isinstance(a, argparse._SubParsersAction)
                                  for sub in a.choices.values()]
    for parser in parsers:
        text = "".join(parser.format_help().split())  # argparse wraps long defaults anywhere
        for action in parser._actions:
            if action.option_strings and action.help != argparse.SUPPRESS:
                assert action.help, (parser.prog, action.option_strings)  # every option says what it does
                if not (action.default is None or action.default is False or action.default == argparse.SUPPRESS):
                    assert "".join(f"(default: {action.default})".split()) in text, (parser.prog, action.option_strings)


def test_progress_redraws_on_a_terminal_and_prints_plain_lines_elsewhere(capsys):
    from inpdiff.runtime.cli import Progress

    plain = Progress(True, None, terminal=False, every=0.0)
    plain.tiles(81, 0)
    plain.tiles(0, 40)
    plain.tick()
    err = capsys.readouterr().err
    assert "\r" not in err and "tiles 40/81 of the images in hand" in err and "img/s" in err
    tty = Progress(True, None, terminal=True)
    tty.tick()
    assert capsys.readouterr().err.startswith("\r[1]")
    quiet = Progress(False, None, terminal=True)
    quiet.tiles(5, 0)
    quiet.tick()
    assert capsys.readouterr().err == ""
