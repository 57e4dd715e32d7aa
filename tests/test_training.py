import json

import pytest
import torch
from conftest import make_photo

from inpdiff.model import load_model
from inpdiff.evaluation import markdown, run_eval
from inpdiff.training.evaluate import torch_predict
from inpdiff.training.losses import edge_loss, mask_loss, total_loss
from inpdiff.training.train import lr_at, train


def _target():
    mask = torch.zeros(2, 1, 16, 16)
    mask[:, :, 4:12, 4:12] = 1
    return mask


def test_mask_loss_rewards_the_right_mask_and_weights_the_boundary():
    mask = _target()
    good, bad = (mask * 2 - 1) * 6, -(mask * 2 - 1) * 6
    band = torch.zeros_like(mask)
    assert mask_loss(good, mask, band, 2.0) < 0.1 < mask_loss(bad, mask, band, 2.0)
    # An error confined to the boundary band costs more when the band is weighted up.
    wrong_band = good.clone()
    band[:, :, 3:13, 3:13] = 1
    band[:, :, 5:11, 5:11] = 0
    wrong_band[band.bool()] *= -1
    assert mask_loss(wrong_band, mask, band, 4.0) > mask_loss(wrong_band, mask, band, 0.0)


def test_edge_loss_and_weights():
    mask, edge = _target(), torch.zeros(2, 1, 16, 16)
    edge[:, :, 4, 4:12] = 1
    assert edge_loss((edge * 2 - 1) * 6, edge) < edge_loss(torch.zeros_like(edge), edge)
    logits = torch.randn_like(mask)
    loss, parts = total_loss(logits, logits, mask, edge, torch.zeros_like(mask), 0.7, 0.3, 2.0)
    assert loss.item() == pytest.approx(0.7 * parts["mask"] + 0.3 * parts["edge"], rel=1e-5)
    no_edge, parts = total_loss(logits, logits, mask, edge, torch.zeros_like(mask), 0.7, 0.0, 2.0)
    assert parts["edge"] == 0 and no_edge.item() == pytest.approx(0.7 * parts["mask"], rel=1e-5)


def test_sample_weights_scale_each_samples_share_of_the_loss():
    mask, edge = _target(), torch.zeros(2, 1, 16, 16)
    edge[:, :, 4, 4:12] = 1
    logits = torch.randn_like(mask, requires_grad=True)
    band = torch.zeros_like(mask)
    plain, _ = total_loss(logits, logits, mask, edge, band, 0.7, 0.3, 2.0)
    ones, _ = total_loss(logits, logits, mask, edge, band, 0.7, 0.3, 2.0, torch.ones(2))
    assert ones.item() == pytest.approx(plain.item(), rel=1e-6)
    # A sample weighted 0 contributes no gradient; the other still does.
    only_first, _ = total_loss(logits, logits, mask, edge, band, 0.7, 0.3, 2.0, torch.tensor([1.0, 0.0]))
    only_first.backward()
    assert float(logits.grad[1].abs().max()) == 0 and float(logits.grad[0].abs().max()) > 0


def test_lr_warms_up_then_decays(tiny_cfg):
    lrs = [lr_at(s, 100, tiny_cfg) for s in range(100)]
    peak = tiny_cfg.train.lr
    assert lrs[0] < lrs[1] == pytest.approx(peak) and lrs[-1] < 0.05 * peak
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:]))


def test_tiny_training_run_learns_and_resumes_exactly(tiny_cfg, tmp_path):
    full = train(tiny_cfg, tmp_path / "full", progress=False)
    losses = [h["loss"] for h in full["history"]]
    assert len(losses) == 3 and losses[-1] < losses[0]
    for name in ("model.safetensors", "config.json", "train_state.safetensors", "train_state.json"):
        assert (tmp_path / "full" / "last" / name).is_file()
    assert not list(tmp_path.rglob("*.pt")) and not list(tmp_path.rglob("*.pth"))

    # Stop after one epoch, resume: the same weights as the uninterrupted run.
    train(tiny_cfg, tmp_path / "split", progress=False, stop_after=1)
    resumed = train(tiny_cfg, tmp_path / "split", progress=False, resume=True)
    assert [h["loss"] for h in resumed["history"]] == pytest.approx(losses, rel=1e-5)
    a, b = load_model(tmp_path / "full" / "last"), load_model(tmp_path / "split" / "last")
    for k, v in a.state_dict().items():
        assert torch.allclose(v, b.state_dict()[k], atol=1e-6), k


def test_loader_workers_change_nothing_and_validation_can_skip_epochs(tiny_cfg, tmp_path):
    """Forked loader workers (the GPU setting) give the very run of in-process loading."""
    plain = train(tiny_cfg, tmp_path / "plain", progress=False)
    cfg = tiny_cfg.replace(["train.loader_workers=2", "train.val_every=2"])
    forked = train(cfg, tmp_path / "forked", progress=False)
    assert [h["loss"] for h in forked["history"]] == pytest.approx([h["loss"] for h in plain["history"]], rel=1e-5)
    # Validated at epoch 2 and at the last (3), not at 1.
    assert ["pixel_auc" in h for h in forked["history"]] == [False, True, True]


def test_a_time_budget_ends_the_run_with_the_learning_rate_decayed(tiny_cfg, tmp_path):
    cfg = tiny_cfg.replace(["train.epochs=1000", "train.minutes=1e-6"])  # spent within the first epoch
    assert cfg.train.minutes == 1e-6  # YAML alone would read "1e-6" as a string
    run = train(cfg, tmp_path / "timed", progress=False)
    assert len(run["history"]) == 1 and "pixel_auc" in run["history"][0]
    state = json.loads((tmp_path / "timed" / "last" / "train_state.json").read_text())
    assert state["elapsed"] > 6e-5 and state["param_groups"][0]["lr"] < 0.05 * cfg.train.lr
    assert lr_at(50, 100, cfg, elapsed=0.0) == pytest.approx(cfg.train.lr)  # the clock, not the step, decays it


def test_resume_without_a_checkpoint_is_a_clear_error(tiny_cfg, tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint to resume"):
        train(tiny_cfg, tmp_path / "none", progress=False, resume=True)


def test_fine_tuning_starts_from_the_checkpoint_and_refuses_another_architecture(tiny_cfg, tmp_path):
    train(tiny_cfg.replace(["train.epochs=1"]), tmp_path / "base", progress=False)
    # With a learning rate of zero the fine-tuned weights are the checkpoint's, bit for bit (the
    # batch-norm statistics, which are not weights, still move).
    frozen = tiny_cfg.replace(["train.epochs=1", "train.lr=0", f"train.init_from={tmp_path / 'base' / 'last'}"])
    train(frozen, tmp_path / "tuned", progress=False)
    a, b = load_model(tmp_path / "base" / "last"), dict(load_model(tmp_path / "tuned" / "last").named_parameters())
    assert all(torch.equal(v, b[k]) for k, v in a.named_parameters())
    fresh = dict(load_model(tmp_path / "base" / "last").named_parameters())
    train(tiny_cfg.replace(["train.epochs=1", "train.lr=0"]), tmp_path / "scratch", progress=False)
    assert not all(torch.equal(v, fresh[k]) for k, v in load_model(tmp_path / "scratch" / "last").named_parameters())
    other = frozen.replace(["model.dn_widths=[8, 8, 16, 24]"])
    with pytest.raises(ValueError, match="another architecture"):
        train(other, tmp_path / "other", progress=False)


@pytest.mark.parametrize("overrides", [["model.diffusion=false"], ["model.edge_supervision=false", "model.use_dmfe=false"],
                                       ["diffusion.self_condition=true", "train.p2_gamma=1.0"]])
def test_ablations_train(tiny_cfg, tmp_path, overrides):
    cfg = tiny_cfg.replace(overrides + ["train.epochs=1"])
    result = train(cfg, tmp_path / "run", progress=False)
    assert result["history"][0]["pixel_auc"] is not None
    assert load_model(tmp_path / "run" / "best").cfg == cfg


def test_eval_reports_per_method_and_robustness(tiny_cfg, tiny_dataset, tmp_path):
    from inpdiff.data.datasets import discover
    from inpdiff.model import InpDiffusion

    model = InpDiffusion(tiny_cfg).eval()
    report = run_eval(lambda: torch_predict(model, steps=2, n_samples=1), discover(tiny_dataset), tmp_path / "report",
                      ["clean", "jpeg50", "resize0.5"], progress=False)
    clean = report["summary"]["clean"]
    assert clean["images"] == 12 and clean["pristine_images"] == 6
    assert set(clean["per_method"]) == {"telea", "ns", "biharmonic"}
    saved = json.loads((tmp_path / "report.json").read_text())
    assert set(saved["summary"]) == {"clean", "jpeg50", "resize0.5"}
    md = (tmp_path / "report.md").read_text()
    assert md == markdown(report["summary"]) and "| biharmonic |" in md and "| resize0.5 |" in md
    with pytest.raises(ValueError, match="unknown perturbations"):
        run_eval(lambda: torch_predict(model), [], None, ["sepia"], progress=False)


def test_leave_one_family_out_runs_end_to_end(tiny_cfg, photos_dir, tmp_path):
    from inpdiff.data.datasets import discover, without_families
    from inpdiff.data.synth import SynthConfig, synthesize
    from inpdiff.training.lomo import leave_one_out

    data = tmp_path / "data"
    synthesize(photos_dir, data, SynthConfig(per_image=2, methods=("telea", "patchmatch"), workers=1), progress=False)
    samples = discover(data)
    kept = without_families(samples, ("patch",))
    assert {s.method for s in kept} == {"pristine", "telea"} and len(kept) < len(samples)
    tiny_cfg.data.train_dir = tiny_cfg.data.val_dir = str(data)
    tiny_cfg.train.epochs = 1
    report = leave_one_out(tiny_cfg, ["classical", "patch"], tmp_path / "lomo", data, progress=False)
    assert set(report["held_out"]) == set(report["in_distribution"]) == {"classical", "patch"}
    for row in [*report["held_out"].values(), *report["in_distribution"].values()]:
        assert all(0.0 <= row[k] <= 1.0 for k in ("pixel_auc", "f1", "iou", "image_auc"))
    runs = sorted(p.name for p in (tmp_path / "lomo").iterdir() if p.is_dir())
    assert runs == ["all", "without-classical", "without-patch"]
    assert json.loads((tmp_path / "lomo" / "without-patch" / "best" / "config.json").read_text())[
        "config"]["data"]["exclude_families"] == ["patch"]
    with pytest.raises(ValueError, match="no samples of the family learned"):
        leave_one_out(tiny_cfg, ["learned"], tmp_path / "lomo", data, progress=False)


def test_curriculum_keeps_a_family_out_until_its_epoch_and_epochs_the_same_length():
    from inpdiff.data.datasets import curriculum_epochs
    from inpdiff.training.train import epoch_order

    families = ["classical"] * 6 + ["latent"] * 4 + ["pristine"] * 2
    joins = curriculum_epochs(["latent:2"])
    for epoch in range(4):
        order = epoch_order(families, joins, epoch, seed=0)
        assert len(order) == len(families)
        assert any(families[i] == "latent" for i in order) == (epoch >= 2)
    assert epoch_order(families, joins, 3, 0) == epoch_order(families, joins, 3, 0)
    with pytest.raises(ValueError, match="family:epoch"):
        curriculum_epochs(["latent"])


def test_image_context_model_trains_exports_and_matches_onnx(tiny_cfg, tmp_path):
    from inpdiff.export.onnx_export import ExportConfig, export
    from inpdiff.model import load_model

    cfg = tiny_cfg.replace(["model.context=true", "model.learned_highpass=true", "model.diffusion=false",
                            "train.epochs=1", "data.curriculum=[classical:0]"])
    train(cfg, tmp_path / "run", progress=False)
    model = load_model(tmp_path / "run" / "last")
    assert model.acn.bayar is not None and any(hasattr(c, "q") for c in model.acn.context)
    # export() runs its own parity check of ONNX Runtime against PyTorch on the check image.
    manifest = export(tmp_path / "run" / "last", tmp_path / "onnx", ExportConfig(max_steps=12),
                      check_images=[make_photo(70, 90, 2)])
    assert manifest["diffusion"] is False
