"""``fastgan-kernels train | generate | convert``: the GAN workflow from the shell.

    fastgan-kernels train --steps 2000 --out-dir runs/digits            # fused layers, digits
    torchrun --nproc-per-node 2 -m fastgan_kernels.cli train ...        # DDP (gloo on CPU, NCCL on GPU)
    fastgan-kernels generate --checkpoint runs/digits/last.pt --n 64 --out grid.png
    fastgan-kernels convert --checkpoint runs/digits/last.pt --prune 0.9 --quantize int8 --out g_small.pt
    fastgan-kernels generate --checkpoint g_small.pt --n 64 --out grid_small.png

``train``'s flags are generated from :class:`~fastgan_kernels.train.config.TrainConfig`.
"""
from __future__ import annotations

import argparse
import json
import sys

from .config import _int_tuple, add_arguments, from_args


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a GAN on the fused layers (digits or an image folder)",
                              description="Adversarial training (BCE-with-logits D, non-saturating G, Adam) with "
                                          "the fused layers; AMP, accumulation, checkpoints/resume, DiffAugment, "
                                          "FGSM, transfer learning, gradual pruning, DDP via torchrun.")
    add_arguments(p)
    p.add_argument("--json", metavar="F", help="also write the run summary as JSON")
    p.set_defaults(func=train_main)

    p = subparsers.add_parser("generate", help="sample a trained or compressed generator into an image grid")
    p.add_argument("--checkpoint", required=True, metavar="F", help="training checkpoint or `convert` output")
    p.add_argument("--n", type=int, default=64, help="number of images (default 64)")
    p.add_argument("--out", default="grid.png", metavar="PNG", help="output image (default grid.png)")
    p.add_argument("--seed", type=int, default=0, help="latent seed (default 0)")
    p.add_argument("--labels", type=_int_tuple, metavar="N,N", help="conditional: labels to cycle through")
    p.add_argument("--nrow", type=int, help="images per row (default: square-ish; conditional: one class per column)")
    p.add_argument("--scale", type=int, default=4, help="pixel enlargement factor (default 4)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--eager", action="store_true", help="load a training checkpoint into plain nn.Linear layers")
    p.add_argument("--quality", action="store_true", help="print the MMD / classifier measure of the samples")
    p.set_defaults(func=generate_main)

    p = subparsers.add_parser("convert", help="compress a trained generator (block pruning, int8)")
    p.add_argument("--checkpoint", required=True, metavar="F", help="training checkpoint")
    p.add_argument("--out", required=True, metavar="F", help="compressed generator file (for `generate`)")
    p.add_argument("--prune", type=float, default=0.0, metavar="S", help="block sparsity in [0, 1) (default 0: none)")
    p.add_argument("--block", type=_int_tuple, default=(16, 16), metavar="BN,BK", help="pruning block (default 16,16)")
    p.add_argument("--quantize", choices=("none", "int8"), default="none", help="int8: static, calibrated on latents")
    p.add_argument("--observer", choices=("max", "percentile"), default="max", help="int8 calibration observer")
    p.add_argument("--calib-batches", type=int, default=8, help="calibration batches of 64 latents (default 8)")
    p.set_defaults(func=convert_main)


def _fail(command: str, exc: Exception) -> int:
    print(f"fastgan-kernels {command}: {exc}", file=sys.stderr)
    return 2


def train_main(args: argparse.Namespace) -> int:
    from .trainer import train

    try:
        cfg = from_args(args)
        result = train(cfg)
    except (ValueError, FileNotFoundError, ImportError) as exc:
        return _fail("train", exc)
    summary = {"step": result.step, "last": result.last, "checkpoint": result.checkpoint,
               "step_time_ms": None if result.step_time_s is None else 1e3 * result.step_time_s,
               "seed": result.config.seed, "fused": result.config.fused}
    if result.checkpoint is None:  # not rank 0: rank 0 reports
        return 0
    print(f"trained {result.step} steps ({'fused' if result.config.fused else 'eager'} layers, seed "
          f"{result.config.seed}); last: " + ", ".join(f"{k} {v:.4f}" for k, v in result.last.items()))
    if result.step_time_s is not None:
        print(f"median step time {1e3 * result.step_time_s:.2f} ms")
    if result.sharing is not None:
        print(result.sharing)
        summary["sharing"] = result.sharing.to_dict()
    if result.frozen:
        print(f"frozen generator layers: {', '.join(result.frozen)}")
        summary["frozen"] = result.frozen
    if result.quality_before is not None:
        print(f"quality before: {result.quality_before}\nquality after:  {result.quality_after}")
        summary["quality_before"] = result.quality_before.to_dict()
        summary["quality_after"] = result.quality_after.to_dict()
    if result.params_in_sync is not None:
        summary["params_in_sync"] = result.params_in_sync
    print(f"checkpoint: {result.checkpoint}")
    if result.exported:
        print(f"BSR-exported generator: {result.exported}")
        summary["exported"] = result.exported
    if result.exported_int8:
        print(f"int8 generator (calibrated on latents): {result.exported_int8}")
        summary["exported_int8"] = result.exported_int8
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)
    return 0


def generate_main(args: argparse.Namespace) -> int:
    from .compress import build_generator
    from .grid import sample_images, save_grid

    try:
        g, meta = build_generator(args.checkpoint, args.device, fused=not args.eager)
        images, labels = sample_images(g, args.n, args.seed, args.labels)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        return _fail("generate", exc)
    nrow = args.nrow
    if nrow is None and labels is not None:
        nrow = len(args.labels) if args.labels else g.num_classes
    save_grid(images, args.out, nrow=nrow, scale=args.scale)
    kind = "compressed" if meta["format"].startswith("fastgan_kernels.compressed") else f"step {meta.get('step')}"
    print(f"wrote {args.out}: {args.n} images from {args.checkpoint} ({kind})")
    if args.quality:
        from .data import digits_tensors
        from .quality import QualityMeter

        model = meta["model"]
        # a model fine-tuned onto some classes is measured against those classes' real digits
        classes = tuple((meta.get("config") or {}).get("classes") or ())
        real, _ = digits_tensors(model["img_size"], classes, model["channels"])
        against = f"real digits {','.join(map(str, classes))}" if classes else "all real digits"
        print(f"{QualityMeter(real, n=min(512, args.n))(images, labels)} (against {against})")
    return 0


def convert_main(args: argparse.Namespace) -> int:
    from .build import plain_generator
    from .compress import compress_generator, describe, load_train_checkpoint, save_compressed
    from .transfer import load_weights

    if args.prune <= 0 and args.quantize == "none":
        return _fail("convert", ValueError("nothing to do: pass --prune S and/or --quantize int8"))
    try:
        blob, cfg = load_train_checkpoint(args.checkpoint)
        g = plain_generator(cfg.model_dict())
        load_weights(g, blob["generator"], "generator")
        out, info = compress_generator(g, cfg.model_dict(), args.prune, tuple(args.block), args.quantize == "int8",
                                       args.observer, args.calib_batches, seed=cfg.seed or 0, classes=cfg.classes)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        return _fail("convert", exc)
    save_compressed(args.out, out, cfg.model_dict(), info)
    for key in ("prune", "quantize"):
        if key in info:
            print(info[key]["report"])
    print(describe(out))
    print(f"PSNR of the compressed generator's images vs the original's: {info['psnr_db_vs_uncompressed']:.1f} dB")
    if "psnr_db_vs_pruned" in info:
        print(f"PSNR of the compressed generator's images vs the pruned float generator's: "
              f"{info['psnr_db_vs_pruned']:.1f} dB")
    print(f"wrote {args.out}")
    return 0
