"""Block-sparse (BSR) weights: the format every block-sparse kernel reads.

A weight ``W [N, K]`` pruned in ``(bn, bk)`` blocks is stored as

* ``values``  ``[nnz_blocks, bn, bk]``: the kept blocks, row-major inside a block;
* ``row_ptr`` ``[ceil(N / bn) + 1]`` int32: block row ``r`` owns ``values[row_ptr[r]:row_ptr[r+1]]``;
* ``col_idx`` ``[nnz_blocks]`` int32: the block column of each kept block (sorted within a row).

N and K need not be multiples of the block: the last block row / column is padded with
zeros in ``values`` and the kernels mask the padding off (x is never read past K, y
never written past N). Block sizes are powers of two >= 16 (16, 32, 64, ...; bn and bk
may differ).
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import torch

MIN_BLOCK = 16
MAX_BLOCK = 256


def check_block(block, name: str = "block") -> tuple[int, int]:
    """``block`` as (bn, bk); each a power of two in [16, 256]. An int means a square block."""
    if isinstance(block, int) and not isinstance(block, bool):
        block = (block, block)
    if not (isinstance(block, (tuple, list)) and len(block) == 2):
        raise ValueError(f"{name} must be an int or a pair (bn, bk), got {block!r}")
    for b in block:
        if not isinstance(b, int) or isinstance(b, bool) or b < MIN_BLOCK or b > MAX_BLOCK or b & (b - 1):
            raise ValueError(f"{name} sizes must be powers of two in [{MIN_BLOCK}, {MAX_BLOCK}] "
                             f"(16, 32, 64, ...), got {tuple(block)}")
    return int(block[0]), int(block[1])


def grid(shape: tuple[int, int], block: tuple[int, int]) -> tuple[int, int]:
    """Number of block rows and block columns covering ``shape`` (padding the last ones)."""
    (n, k), (bn, bk) = shape, block
    return -(-n // bn), -(-k // bk)


def block_norms(weight: torch.Tensor, block) -> torch.Tensor:
    """L2 norm of every (bn, bk) block of ``weight`` [N, K] -> [ceil(N/bn), ceil(K/bk)] (fp32)."""
    bn, bk = check_block(block)
    nbr, nbc = grid(tuple(weight.shape), (bn, bk))
    padded = _pad(weight.detach().float(), nbr * bn, nbc * bk)
    return padded.view(nbr, bn, nbc, bk).square().sum(dim=(1, 3)).sqrt()


def expand_mask(block_mask: torch.Tensor, shape: tuple[int, int], block) -> torch.Tensor:
    """Block mask [nbr, nbc] -> element mask [N, K] (same dtype as the block mask)."""
    bn, bk = check_block(block)
    return block_mask.repeat_interleave(bn, 0).repeat_interleave(bk, 1)[: shape[0], : shape[1]]


def _pad(t: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    if t.shape == (rows, cols):
        return t
    return torch.nn.functional.pad(t, (0, cols - t.shape[1], 0, rows - t.shape[0]))


@dataclasses.dataclass
class BsrWeight:
    """A block-sparse weight: ``values``, ``row_ptr``, ``col_idx`` and the dense ``shape`` (N, K)."""

    values: torch.Tensor
    row_ptr: torch.Tensor
    col_idx: torch.Tensor
    shape: tuple[int, int]

    def __post_init__(self):
        self.shape = (int(self.shape[0]), int(self.shape[1]))
        check_indices(self.values, self.row_ptr, self.col_idx, self.shape)

    @property
    def block(self) -> tuple[int, int]:
        return int(self.values.shape[1]), int(self.values.shape[2])

    @property
    def nnz_blocks(self) -> int:
        return int(self.values.shape[0])

    @property
    def sparsity(self) -> float:
        """Fraction of the (padded) blocks that are pruned."""
        nbr, nbc = grid(self.shape, self.block)
        return 1.0 - self.nnz_blocks / (nbr * nbc)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.values, self.row_ptr, self.col_idx))

    @classmethod
    def from_dense(cls, weight: torch.Tensor, block, block_mask: Optional[torch.Tensor] = None) -> "BsrWeight":
        """Keep the blocks where ``block_mask`` [nbr, nbc] is true (default: the non-zero blocks)."""
        if weight.dim() != 2:
            raise ValueError(f"weight must be 2-D [N, K], got shape {tuple(weight.shape)}")
        bn, bk = check_block(block)
        nbr, nbc = grid(tuple(weight.shape), (bn, bk))
        if block_mask is None:
            block_mask = block_norms(weight, (bn, bk)) > 0
        if tuple(block_mask.shape) != (nbr, nbc):
            raise ValueError(f"block_mask must have shape (ceil(N/bn), ceil(K/bk)) = ({nbr}, {nbc}), "
                             f"got {tuple(block_mask.shape)}")
        block_mask = block_mask.to(device=weight.device, dtype=torch.bool)
        blocks = _pad(weight.detach(), nbr * bn, nbc * bk).view(nbr, bn, nbc, bk).transpose(1, 2)
        rows, cols = block_mask.nonzero(as_tuple=True)          # row-major: sorted by row, then column
        values = blocks[rows, cols].contiguous()
        counts = block_mask.sum(dim=1)
        row_ptr = torch.zeros(nbr + 1, dtype=torch.int32, device=weight.device)
        row_ptr[1:] = counts.cumsum(0)
        return cls(values, row_ptr, cols.to(torch.int32), tuple(weight.shape))

    @classmethod
    def from_torch_bsr(cls, t: torch.Tensor, shape: Optional[tuple[int, int]] = None) -> "BsrWeight":
        """From ``torch.sparse_bsr_tensor``; ``shape`` crops a padded tensor back to (N, K)."""
        if t.layout != torch.sparse_bsr:
            raise ValueError(f"expected a torch.sparse_bsr tensor, got layout {t.layout}")
        values = t.values().contiguous()
        shape = tuple(t.shape) if shape is None else shape
        return cls(values, t.crow_indices().to(torch.int32), t.col_indices().to(torch.int32), shape)

    def to_torch_bsr(self) -> torch.Tensor:
        """As ``torch.sparse_bsr_tensor``; its shape is padded to whole blocks."""
        nbr, nbc = grid(self.shape, self.block)
        bn, bk = self.block
        return torch.sparse_bsr_tensor(self.row_ptr.long(), self.col_idx.long(), self.values,
                                       size=(nbr * bn, nbc * bk), check_invariants=True)

    def block_mask(self) -> torch.Tensor:
        nbr, nbc = grid(self.shape, self.block)
        mask = torch.zeros(nbr, nbc, dtype=torch.bool, device=self.values.device)
        mask[block_rows(self.row_ptr, self.nnz_blocks).long(), self.col_idx.long()] = True
        return mask

    def to_dense(self) -> torch.Tensor:
        return to_dense(self.values, self.row_ptr, self.col_idx, self.shape)

    def to(self, *args, **kwargs) -> "BsrWeight":
        values = self.values.to(*args, **kwargs)
        return BsrWeight(values, self.row_ptr.to(values.device), self.col_idx.to(values.device), self.shape)


def block_rows(row_ptr: torch.Tensor, nnz_blocks: Optional[int] = None) -> torch.Tensor:
    """The block row of every kept block (the COO row index), int32.

    Pass ``nnz_blocks`` (known from ``col_idx`` or ``values``) to avoid a device-to-host sync on GPUs.
    """
    counts = (row_ptr[1:] - row_ptr[:-1]).long()
    rows = torch.arange(len(counts), device=row_ptr.device, dtype=torch.int32)
    return torch.repeat_interleave(rows, counts, output_size=nnz_blocks)


def to_dense(values: torch.Tensor, row_ptr: torch.Tensor, col_idx: torch.Tensor, shape) -> torch.Tensor:
    """The dense [N, K] weight (zeros in the pruned blocks)."""
    _, bn, bk = values.shape
    nbr, nbc = grid(tuple(shape), (bn, bk))
    blocks = values.new_zeros(nbr, nbc, bn, bk)
    blocks[block_rows(row_ptr, values.shape[0]).long(), col_idx.long()] = values
    return blocks.transpose(1, 2).reshape(nbr * bn, nbc * bk)[: shape[0], : shape[1]]


def transpose_index(row_ptr: torch.Tensor, col_idx: torch.Tensor, n_block_cols: int):
    """The structure of W.T in BSR: (t_row_ptr [nbc+1], t_col_idx, t_block), all int32.

    Block column ``c`` of W owns kept blocks ``t_block[t_row_ptr[c]:t_row_ptr[c+1]]`` (indices
    into ``values``), which sit in block rows ``t_col_idx[...]``. The grad-x kernels walk it.
    """
    rows = block_rows(row_ptr, col_idx.shape[0])
    order = torch.argsort(col_idx.long() * (len(row_ptr)) + rows.long(), stable=True)
    counts = torch.bincount(col_idx.long(), minlength=n_block_cols)
    t_row_ptr = torch.zeros(n_block_cols + 1, dtype=torch.int32, device=row_ptr.device)
    t_row_ptr[1:] = counts.cumsum(0)
    return t_row_ptr, rows[order].to(torch.int32), order.to(torch.int32)


def check_layout(values: torch.Tensor, row_ptr: torch.Tensor, col_idx: torch.Tensor, shape, op: str) -> None:
    """Shape/dtype checks that need no data (cheap; safe under torch.compile)."""
    if values.dim() != 3:
        raise ValueError(f"{op}: values must be 3-D [nnz_blocks, bn, bk], got shape {tuple(values.shape)}")
    bn, bk = check_block(tuple(values.shape[1:]), f"{op}: values block")
    nbr, _ = grid(tuple(shape), (bn, bk))
    for name, t in (("row_ptr", row_ptr), ("col_idx", col_idx)):
        if not isinstance(t, torch.Tensor) or t.dtype != torch.int32 or t.dim() != 1:
            raise TypeError(f"{op}: {name} must be a 1-D int32 tensor, got "
                            f"{getattr(t, 'dtype', type(t).__name__)} of shape {tuple(getattr(t, 'shape', ()))}")
        if t.device != values.device:
            raise ValueError(f"{op}: {name} must be on values' device {values.device}, got {t.device}")
    if row_ptr.shape[0] != nbr + 1:
        raise ValueError(f"{op}: row_ptr must have ceil(out_features / bn) + 1 = {nbr + 1} entries, "
                         f"got {row_ptr.shape[0]}")
    if col_idx.shape[0] != values.shape[0]:
        raise ValueError(f"{op}: col_idx must have one entry per block ({values.shape[0]}), got {col_idx.shape[0]}")


def check_indices(values, row_ptr, col_idx, shape, op: str = "BsrWeight") -> None:
    """Layout checks plus the index contents (reads the data: call once per weight, not per step)."""
    check_layout(values, row_ptr, col_idx, shape, op)
    nbr, nbc = grid(tuple(shape), tuple(values.shape[1:]))
    rp, ci = row_ptr.long().cpu(), col_idx.long().cpu()
    if rp[0] != 0 or rp[-1] != values.shape[0] or bool((rp[1:] < rp[:-1]).any()):
        raise ValueError(f"{op}: row_ptr must start at 0, never decrease and end at nnz_blocks = "
                         f"{values.shape[0]}, got {rp.tolist() if len(rp) <= 16 else 'a bad sequence'}")
    if ci.numel() and (int(ci.min()) < 0 or int(ci.max()) >= nbc):
        raise ValueError(f"{op}: col_idx entries must be in [0, ceil(in_features / bk) = {nbc}), "
                         f"got range [{int(ci.min())}, {int(ci.max())}]")
    rows = block_rows(rp.to(torch.int32)).long()
    if ci.numel() > 1:
        same_row = rows[1:] == rows[:-1]
        if bool((same_row & (ci[1:] <= ci[:-1])).any()):
            raise ValueError(f"{op}: col_idx must be strictly increasing within each block row "
                             f"(no duplicate blocks)")
