"""`inpdiff train --config edge-s -o runs/NAME`: the training loop.

Deterministic under a seed: each epoch's order, crops, timesteps and noise derive from (seed, epoch),
so a run resumed from an epoch's checkpoint continues exactly as if it had never stopped.
Multi-GPU: launch under `torchrun`; DDP is set up from its environment variables.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..config import Config
from ..data.augment import augment
from ..data.datasets import Sample, curriculum_epochs, discover_all, evenly, load_pair, without_families
from ..data.fills import family
from ..io import atomic_write
from ..data.masks import edge_target
from ..model import InpDiffusion, save_model
from .evaluate import evaluate
from .losses import total_loss
from ..metrics import collapsed, summarize


class TrainSet(Dataset):
    """Augmented crops with their mask, edge and boundary-band targets; decoded images kept in memory."""

    def __init__(self, samples: list[Sample], cfg: Config):
        self.samples, self.data, self.seed = samples, cfg.data, cfg.train.seed
        self.epoch = 0
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def preload(self, threads: int) -> None:
        """Decode every sample now, so that forked loader workers share one copy instead of each
        decoding its own and losing it with the epoch."""
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max(1, threads)) as pool:  # OpenCV's decoders release the GIL
            self._cache = dict(enumerate(pool.map(load_pair, self.samples)))

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if i not in self._cache:
            self._cache[i] = load_pair(self.samples[i])
        rng = np.random.default_rng([self.seed, self.epoch, i])
        image, mask = augment(*self._cache[i], self.data, rng)
        as_t = lambda a: torch.from_numpy(a.astype(np.float32))[None]
        return {"image": torch.from_numpy(image).permute(2, 0, 1).float() / 255.0, "mask": as_t(mask),
                "edge": as_t(edge_target(mask, self.data.edge_width)),
                "boundary": as_t(edge_target(mask, self.data.boundary_width))}


def epoch_order(families: list[str], joins: dict[str, int], epoch: int, seed: int) -> list[int]:
    """The epoch's sample order. Curriculum: a family not yet joined is skipped, and the epoch is
    refilled from the others, so every epoch has as many steps (the learning-rate schedule holds)."""
    order = torch.randperm(len(families), generator=torch.Generator().manual_seed(seed * 1000 + epoch)).tolist()
    order = [i for i in order if joins.get(families[i], 0) <= epoch]
    return (order * (1 + len(families) // max(1, len(order))))[:len(families)]


def lr_at(step: int, total: int, cfg: Config, elapsed: float = 0.0) -> float:
    """Linear warm-up, then cosine decay to 1% of the peak, over the steps or, with a time budget
    (train.minutes), over the seconds trained."""
    t = cfg.train
    if step < t.warmup_steps:
        return t.lr * (step + 1) / t.warmup_steps
    if t.minutes:
        progress = min(1.0, elapsed / (60 * t.minutes))
    else:
        progress = min(1.0, (step - t.warmup_steps) / max(1, total - t.warmup_steps))
    return t.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress)))


def _setup_distributed() -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, torch.device("cuda" if torch.cuda.is_available() else "cpu")
    import torch.distributed as dist

    local = int(os.environ["LOCAL_RANK"])
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), world, device


def _save_state(opt: torch.optim.Optimizer, out: Path, state: dict) -> None:
    """Optimizer tensors to safetensors, everything else to JSON: no pickle anywhere."""
    from safetensors.torch import save_file

    sd = opt.state_dict()
    # safetensors holds no 0-d tensors: the step count is saved as (1,) and reshaped on load.
    tensors = {f"{i}.{k}": torch.atleast_1d(v.detach().cpu()).contiguous()
               for i, s in sd["state"].items() for k, v in s.items()}
    tensors["torch_rng"] = torch.get_rng_state()
    atomic_write(out / "train_state.safetensors", lambda p: save_file(tensors, str(p)))
    meta = {**state, "param_groups": sd["param_groups"]}
    atomic_write(out / "train_state.json", lambda p: p.write_text(json.dumps(meta, indent=2)))


def _load_state(opt: torch.optim.Optimizer, ckpt: Path) -> dict:
    from safetensors.torch import load_file

    tensors = load_file(str(ckpt / "train_state.safetensors"))
    meta = json.loads((ckpt / "train_state.json").read_text())
    torch.set_rng_state(tensors.pop("torch_rng"))
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        i, name = key.split(".", 1)
        state.setdefault(int(i), {})[name] = v.reshape(()) if name == "step" else v
    opt.load_state_dict({"state": state, "param_groups": meta.pop("param_groups")})
    return meta


def _init_weights(model: InpDiffusion, ckpt: Path) -> None:
    from safetensors.torch import load_file

    if not (ckpt / "model.safetensors").is_file():
        raise FileNotFoundError(f"train.init_from: no model.safetensors in {ckpt}")
    state = load_file(str(ckpt / "model.safetensors"))
    mine = model.state_dict()
    wrong = sorted(k for k in mine if k not in state or state[k].shape != mine[k].shape) + sorted(set(state) - set(mine))
    if wrong:
        raise ValueError(f"train.init_from: {ckpt} is another architecture ({len(wrong)} tensors differ, "
                         f"e.g. {wrong[0]}); fine-tune from a checkpoint of this config's model")
    model.load_state_dict(state)


def train(cfg: Config, out_dir: str | Path, resume: bool = False, progress: bool = True,
          stop_after: int | None = None) -> dict:
    """Train to cfg.train.epochs, or stop after `stop_after` epochs of this call (resume later)."""
    rank, world, device = _setup_distributed()
    t = cfg.train
    if t.threads:
        torch.set_num_threads(t.threads)
    torch.manual_seed(t.seed)
    out = Path(out_dir)
    model = InpDiffusion(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    start_epoch, best, history, elapsed = 0, -2.0, [], 0.0
    if resume:
        from safetensors.torch import load_file

        last = out / "last"
        if not (last / "train_state.json").is_file():
            raise FileNotFoundError(f"--resume: no checkpoint to resume in {last}")
        model.load_state_dict(load_file(str(last / "model.safetensors")))
        meta = _load_state(opt, last)
        start_epoch, best, history = meta["epoch"] + 1, meta["best"], meta["history"]
        elapsed = meta.get("elapsed", 0.0)
    elif t.init_from:
        _init_weights(model, Path(t.init_from))
    net = model
    if world > 1:
        if t.minutes:  # each rank's clock would set its own learning rate, and the replicas would drift apart
            raise ValueError("train.minutes needs a single process; set train.epochs under torchrun")
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)

    data = TrainSet(without_families(discover_all(cfg.data.train_dir), cfg.data.exclude_families), cfg)
    if t.loader_workers:
        data.preload(os.cpu_count() or 1)
    # Validation keeps every family for the learning curves; the checkpoint is chosen without the
    # excluded ones, so that a held-out family never steers training.
    val = evenly(discover_all(cfg.data.val_dir), t.val_limit)
    joins = curriculum_epochs(cfg.data.curriculum)
    families = [family(s.method) if not s.pristine else "pristine" for s in data.samples]
    steps_per_epoch = len(data) // (t.batch_size * world)
    if steps_per_epoch == 0:
        raise ValueError(f"{cfg.data.train_dir}: {len(data)} samples is less than one batch of {t.batch_size}")
    total = steps_per_epoch * t.epochs
    amp_dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float16
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    schedule = model.schedule
    w_edge = t.edge_weight if cfg.model.edge_supervision else 0.0
    p2 = schedule.p2_weights(t.p2_gamma).to(device) if cfg.model.diffusion and t.p2_gamma else None
    self_condition = model.dn.self_condition  # the model decides (only a diffusion model has one)

    end = t.epochs if stop_after is None else min(t.epochs, start_epoch + stop_after)
    for epoch in range(start_epoch, end):
        data.epoch = epoch
        order = epoch_order(families, joins, epoch, t.seed)[rank::world][: steps_per_epoch * t.batch_size]
        loader = DataLoader(data, batch_size=t.batch_size, sampler=order, num_workers=t.loader_workers,
                            pin_memory=device.type == "cuda")
        gen = torch.Generator(device=device).manual_seed(t.seed * 1000 + epoch + 7919 * rank)
        net.train()
        sums, t0 = {}, time.perf_counter()
        bar = loader
        if progress and rank == 0:
            from tqdm import tqdm
            bar = tqdm(loader, desc=f"epoch {epoch + 1}/{t.epochs}", unit="batch", leave=False)
        for it, batch in enumerate(bar):
            step = epoch * steps_per_epoch + it
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total, cfg, elapsed + time.perf_counter() - t0)
            b = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            mask = b["mask"]
            if cfg.model.diffusion:
                ts = torch.randint(0, schedule.timesteps, (mask.shape[0],), generator=gen, device=device)
                noise = torch.randn(mask.shape, generator=gen, device=device)
                x_t = schedule.q_sample(2 * mask - 1, ts, noise)
            else:
                x_t, ts = model.baseline_input(mask)
            # Half the batches condition on the model's own first estimate (drawn from gen: resumable).
            with_x0 = self_condition and bool(torch.rand((), generator=gen, device=device) < 0.5)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                mask_logits, edge_logits = net(b["image"], x_t, ts, with_x0)
            loss, parts = total_loss(mask_logits.float(), edge_logits.float(), mask, b["edge"], b["boundary"],
                                     t.mask_weight, w_edge, t.boundary_gain, None if p2 is None else p2[ts])
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
            scaler.step(opt)
            scaler.update()
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v
            if progress and rank == 0 and hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{parts['loss']:.3f}")
        if rank != 0:
            continue
        train_stats = {k: v / steps_per_epoch for k, v in sums.items()}
        seconds = time.perf_counter() - t0
        elapsed += seconds
        last_epoch = epoch + 1 == end or bool(t.minutes and elapsed >= 60 * t.minutes)
        entry = {"epoch": epoch + 1, **train_stats, "seconds": round(seconds, 1)}
        if last_epoch or (epoch + 1) % t.val_every == 0:
            model.eval()
            records = evaluate(model, val, seed=t.seed)["images"] if val else []
            summary = summarize(records) if records else {}
            chosen = summarize([r for r in records if r["pristine"] or family(r["method"]) not in cfg.data.exclude_families]
                               ) if records else {}
            keys = ("pixel_auc", "f1", "iou", "image_auc", "marked", "true_share", "pristine_marked")
            entry.update({k: summary.get(k) for k in keys})
            entry["per_family"] = {f: {k: round(m[k], 4) for k in ("pixel_auc", "f1", "marked")}
                                   for f, m in summary.get("per_family", {}).items()}
            print(json.dumps(entry), flush=True)
            # nan (no edited image of the chosen families in the validation subset) counts as 0
            score = float(np.nan_to_num(chosen.get("pixel_auc", 0.0)) + np.nan_to_num(chosen.get("f1", 0.0)))
            empty = bool(chosen) and collapsed(chosen)
            if empty:  # below any model that marks something: kept as best only if every epoch collapses
                print(f"epoch {epoch + 1}: the model marks almost nothing on edited images "
                      f"({chosen['marked']:.4f} of pixels against {chosen['true_share']:.4f}): a collapsed model",
                      flush=True)
                score = -1.0 + 1e-3 * score
            if score > best:
                best = score
                save_model(model, out / "best", {"epoch": epoch + 1, "val": summary, "collapsed": empty})
        history.append(entry)
        save_model(model, out / "last", {"epoch": epoch + 1})
        _save_state(opt, out / "last", {"epoch": epoch, "best": best, "history": history, "elapsed": elapsed})
        if last_epoch:
            break
    if world > 1:
        torch.distributed.barrier()  # rank 0 may still be validating and saving
        torch.distributed.destroy_process_group()
    return {"history": history, "best": best}
