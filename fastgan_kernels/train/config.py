"""Every training option in one dataclass, used by the Python API and the CLI alike.

``fastgan-kernels train`` builds its flags from :class:`TrainConfig`'s fields (``--lr-g``,
``--g-hidden 256,512``, ``--amp/--no-amp``, ...), so the two can never drift apart; the help
text is each field's ``help`` metadata. A config travels inside every checkpoint
(``to_dict``/``from_dict``), which is how ``resume``, ``generate`` and ``convert`` rebuild the
models without the user repeating the flags.
"""
from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Optional

AUGMENT_OPS = ("color", "brightness", "saturation", "contrast", "translation", "cutout")
LOG_KINDS = ("csv", "tensorboard", "both", "none")


def _f(default, help: str, **kw):
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: tuple(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class TrainConfig:
    # --- models -------------------------------------------------------------------------------
    latent_dim: int = _f(100, "latent size of the generator")
    g_hidden: tuple = _f((256, 512), "generator hidden widths, e.g. 256,512")
    d_hidden: tuple = _f((512, 256), "discriminator hidden widths, e.g. 512,256")
    img_size: int = _f(8, "image side in pixels (the digits are 8x8; other sizes resize them)")
    channels: int = _f(1, "image channels (1 grey, 3 RGB)")
    conditional: bool = _f(False, "conditional GAN: class label embedded and concatenated (G and D)")
    num_classes: int = _f(10, "number of classes (conditional)")
    embed_dim: int = _f(10, "label embedding size (conditional)")
    share_weights: bool = _f(False, "tie the weights of equal-shape layers, in G and in D (e.g. --g-hidden 256,256,256)")
    # --- data ---------------------------------------------------------------------------------
    dataset: str = _f("digits", "'digits' (sklearn's bundled 8x8 digits) or a folder of images (subfolders = classes)")
    classes: tuple = _f((), "train on these labels only, e.g. 0,1,2 (default: all)")
    batch_size: int = _f(64, "micro-batch per process; effective batch = batch_size * grad_accum * world size")
    num_workers: int = _f(0, "DataLoader worker processes")
    # --- optimisation -------------------------------------------------------------------------
    steps: int = _f(2000, "number of training steps (one D update round + one G update each)")
    lr_g: float = _f(2e-4, "generator learning rate (Adam)")
    lr_d: float = _f(2e-4, "discriminator learning rate (Adam)")
    beta1: float = _f(0.5, "Adam beta1")
    beta2: float = _f(0.999, "Adam beta2")
    d_steps: int = _f(1, "discriminator updates per generator update")
    grad_accum: int = _f(1, "micro-batches accumulated per optimiser step")
    amp: bool = _f(False, "mixed precision: bf16 autocast on CPU, fp16 autocast + grad scaler on GPU")
    seed: Optional[int] = _f(None, "fixed seed (default: drawn at random and recorded in the checkpoint)")
    fused: bool = _f(True, "train the fused layers (FusedLinear); --no-fused (or --eager) trains plain nn.Linear")
    backend: str = _f("auto", "fastgan backend of the fused layers: auto, cpu_ext, triton, cuda_ext, reference")
    device: str = _f("auto", "auto (cuda when visible), cpu or cuda[:i]")
    # --- augmentation and robustness ----------------------------------------------------------
    augment: str = _f("", f"DiffAugment-style policy for D's inputs, comma-separated from {AUGMENT_OPS}")
    augment_per_sample: bool = _f(True, "draw augmentation parameters per image (else one draw per batch)")
    translation_ratio: float = _f(0.125, "largest translation, as a fraction of the image side")
    cutout_ratio: float = _f(0.5, "cutout square side, as a fraction of the image side")
    fgsm_eps: float = _f(0.0, "FGSM step size for adversarial real images in D's loss (0: off)")
    fgsm_weight: float = _f(1.0, "weight of the FGSM term in D's loss")
    # --- transfer learning --------------------------------------------------------------------
    init_from: str = _f("", "start from this checkpoint's G and D (architecture taken from it)")
    freeze_g_layers: int = _f(0, "freeze the first k generator layers (transfer learning)")
    # --- compression in the loop --------------------------------------------------------------
    prune_sparsity: float = _f(0.0, "final block sparsity of the generator, reached gradually (0: off)")
    prune_block: tuple = _f((16, 16), "pruning block (bn,bk), powers of two >= 16")
    prune_begin: int = _f(0, "step at which gradual pruning starts")
    prune_end: int = _f(-1, "step at which the final sparsity is reached (-1: 80%% of the steps)")
    prune_frequency: int = _f(10, "re-mask every this many steps")
    export_int8: bool = _f(False, "at the end, also write an int8 generator calibrated on latents (generator_int8.pt)")
    # --- output -------------------------------------------------------------------------------
    out_dir: str = _f("runs/gan", "checkpoints and logs go here")
    log: str = _f("csv", f"scalar log: {', '.join(LOG_KINDS)}")
    log_every: int = _f(10, "log scalars every this many steps")
    ckpt_every: int = _f(500, "checkpoint every this many steps (0: only at the end)")
    resume: str = _f("", "resume from this checkpoint, or 'auto' for out_dir/last.pt when it exists")
    progress: bool = _f(True, "show a progress bar")
    quality: bool = _f(False, "measure sample quality (MMD, classifier confidence) at the start and the end")

    def __post_init__(self):
        self.g_hidden, self.d_hidden = tuple(int(v) for v in self.g_hidden), tuple(int(v) for v in self.d_hidden)
        self.classes, self.prune_block = tuple(int(v) for v in self.classes), tuple(int(v) for v in self.prune_block)
        for name in ("latent_dim", "img_size", "channels", "num_classes", "embed_dim", "batch_size", "d_steps",
                     "grad_accum", "log_every", "prune_frequency"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("steps", "num_workers", "ckpt_every", "freeze_g_layers", "prune_begin"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"TrainConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        if not self.g_hidden or not self.d_hidden or min(self.g_hidden + self.d_hidden) < 1:
            raise ValueError("TrainConfig.g_hidden and d_hidden must be non-empty lists of positive widths")
        for name in ("lr_g", "lr_d"):
            if not getattr(self, name) > 0:
                raise ValueError(f"TrainConfig.{name} must be > 0, got {getattr(self, name)!r}")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ValueError(f"TrainConfig.beta1/beta2 must be in [0, 1), got {self.beta1}, {self.beta2}")
        if not 0.0 <= self.prune_sparsity < 1.0:
            raise ValueError(f"TrainConfig.prune_sparsity must be in [0, 1), got {self.prune_sparsity}")
        if self.fgsm_eps < 0:
            raise ValueError(f"TrainConfig.fgsm_eps must be >= 0, got {self.fgsm_eps}")
        if self.log not in LOG_KINDS:
            raise ValueError(f"TrainConfig.log must be one of {LOG_KINDS}, got {self.log!r}")
        bad = [op for op in self.augment_ops if op not in AUGMENT_OPS]
        if bad:
            raise ValueError(f"TrainConfig.augment: unknown op(s) {bad}; choose from {AUGMENT_OPS}")
        if self.conditional and self.classes and max(self.classes) >= self.num_classes:
            raise ValueError(f"TrainConfig.classes {self.classes} must be < num_classes {self.num_classes}")

    # --- derived ------------------------------------------------------------------------------
    @property
    def augment_ops(self) -> tuple[str, ...]:
        return tuple(op.strip() for op in self.augment.split(",") if op.strip())

    @property
    def prune_end_step(self) -> int:
        return self.prune_end if self.prune_end >= 0 else max(self.prune_begin + 1, int(0.8 * self.steps))

    def model_dict(self) -> dict:
        """The fields that define the architecture (what a checkpoint's weights need)."""
        return {k: getattr(self, k) for k in MODEL_FIELDS}

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    # --- (de)serialisation --------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
                for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"TrainConfig.from_dict: unknown option(s) {sorted(unknown)}")
        return cls(**data)


MODEL_FIELDS = ("latent_dim", "g_hidden", "d_hidden", "img_size", "channels", "conditional", "num_classes",
                "embed_dim", "share_weights")


# --- the CLI side ---------------------------------------------------------------------------------
def _int_tuple(text: str) -> tuple:
    try:
        return tuple(int(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 256,512; got {text!r}") from None


def _optional_int(text: str) -> Optional[int]:
    return None if text.lower() in ("", "none") else int(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field (``lr_g`` -> ``--lr-g``), defaults suppressed so that
    :func:`from_args` can tell an explicit flag from a default (for resume / init_from)."""
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        help_text = f"{f.metadata['help']} (default: {shown if shown != '' else 'none'})"
        hint = hints[f.name]
        kw = dict(dest=f.name, default=argparse.SUPPRESS, help=help_text)
        if hint is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif hint is tuple:
            parser.add_argument(flag, type=_int_tuple, metavar="N,N", **kw)
        elif f.name == "seed":
            parser.add_argument(flag, type=_optional_int, metavar="INT", **kw)
        else:
            parser.add_argument(flag, type=hint, metavar=hint.__name__.upper(), **kw)
    parser.add_argument("--eager", dest="fused", action="store_false", default=argparse.SUPPRESS,
                        help="train plain nn.Linear layers (same as --no-fused)")


def from_args(args: argparse.Namespace, base: Optional[TrainConfig] = None) -> TrainConfig:
    """A config from parsed flags: the flags given on top of ``base`` (or of the defaults)."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}
    return dataclasses.replace(base, **given) if base is not None else TrainConfig(**given)
