"""sediment_torch.py - SPEC §2 projections in PyTorch, on the training cluster's own device.

A worker projects the per-example gradients it is sent (n x d) down to features (n x k). For
a model of millions of parameters those gradients are far larger than the features, so a
PyTorch client can project them itself, on the GPU that computed them, and send the features
instead (`Client.contribute(..., features=...)`, `Client.attribute(..., query_features=...)`):
SPEC §2 fixes P bit for bit from (kind, k, seed, s), so the features are the worker's own up
to f32 rounding, and the receipt then digests what was sent, the features.

    proj = Projector("rademacher", input_dim=d, dim=1024, seed=7, device="cuda")
    feats = proj(per_example_grads)            # n x 1024 float32, on the device
    client.contribute(model, ckpt, lr, who, shard, ids, features=feats.cpu().numpy())

P is made from Philox4x32-10 (on int64 tensors with 16-bit partial products, so every step
is exact on any device) and multiplied in float32. When P fits in `cache_bytes` it is made once
per device and kept, so later calls are one matrix product; otherwise rows of it are made in
blocks of at most `block_bytes` for every call, like the worker's cuda backend.
"""
import math

import torch

__all__ = ["Projector", "philox4x32", "rademacher_rows", "sjlt_rows"]

_M0, _M1 = 0xD2511F53, 0xCD9E8D57
_W0, _W1 = 0x9E3779B9, 0xBB67AE85
_MASK = 0xFFFFFFFF
_RADEMACHER_TAG = 0x52414445  # "RADE"
_SJLT_TAG = 0x534A4C54        # "SJLT"


def _mulhilo(a, m):
    """(high, low) 32-bit words of a * m for a an int64 tensor of 32-bit values and m a
    32-bit constant, from 16-bit halves of m so that no product passes 2^49."""
    lo = a * (m & 0xFFFF)                 # < 2^48
    t = (lo >> 16) + a * (m >> 16)        # a*m = t * 2^16 + (lo & 0xFFFF); t < 2^49
    return t >> 16, ((t & 0xFFFF) << 16) | (lo & 0xFFFF)


def philox4x32(ctr, key):
    """Philox4x32-10 on tensors: ctr is four int64 tensors (or ints) of 32-bit words,
    broadcast together; key two ints. Returns the four output words as int64 tensors."""
    c0, c1, c2, c3 = torch.broadcast_tensors(*(torch.as_tensor(x, dtype=torch.int64) & _MASK
                                               for x in ctr))
    k0, k1 = int(key[0]) & _MASK, int(key[1]) & _MASK
    for r in range(10):
        if r > 0:
            k0 = (k0 + _W0) & _MASK
            k1 = (k1 + _W1) & _MASK
        hi0, lo0 = _mulhilo(c0, _M0)
        hi1, lo1 = _mulhilo(c2, _M1)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return c0, c1, c2, c3


def _seed_key(seed):
    seed = int(seed)
    if not 0 <= seed < 2 ** 64:
        raise ValueError("seed: must be a u64")
    return (seed & _MASK, seed >> 32)


def rademacher_rows(j0, j1, k, seed, device=None, dtype=torch.float32):
    """Rows j0 .. j1-1 of the rademacher P (SPEC §2): entry (j, c) is -1/sqrt(k) when bit
    c % 32 of word (c % 128) / 32 of Philox((j lo, j hi, c / 128, "RADE"), seed) is set,
    else +1/sqrt(k)."""
    key = _seed_key(seed)
    j = torch.arange(j0, j1, dtype=torch.int64, device=device)[:, None]
    blocks = torch.arange((k + 127) // 128, dtype=torch.int64, device=device)[None, :]
    words = torch.stack(philox4x32((j & _MASK, j >> 32, blocks, _RADEMACHER_TAG), key), dim=-1)
    c = torch.arange(k, dtype=torch.int64, device=device)
    word = words.reshape(j1 - j0, -1)[:, c // 32]       # word (c % 128) / 32 of block c / 128
    negative = (word >> (c % 32)) & 1
    scale = torch.tensor(1.0 / math.sqrt(k), dtype=dtype, device=device)
    return torch.where(negative == 1, -scale, scale)


def sjlt_rows(j0, j1, k, seed, s=1, device=None):
    """Where rows j0 .. j1-1 of the sjlt P are non-zero (SPEC §2): for each t < s, the bucket
    t·(k/s) + w0 % (k/s) and the sign (-1 when w1 is odd) of Philox((j lo, j hi, t, "SJLT"),
    seed). Returns (buckets, signs), each (j1 - j0) x s; the values are sign/sqrt(s)."""
    if s < 1 or k % s != 0:
        raise ValueError("s: must be at least 1 and divide k=%d" % k)
    key = _seed_key(seed)
    width = k // s
    j = torch.arange(j0, j1, dtype=torch.int64, device=device)[:, None]
    t = torch.arange(s, dtype=torch.int64, device=device)[None, :]
    w0, w1, _, _ = philox4x32((j & _MASK, j >> 32, t, _SJLT_TAG), key)
    buckets = t * width + w0 % width
    signs = torch.where((w1 & 1) == 1, -1.0, 1.0)
    return buckets, signs


class Projector:
    """phi = g P for SPEC §2's P of a registered model: kind "rademacher", "sjlt" or "none",
    input_dim d, dim k, seed, s (sjlt). Call it on an n x d tensor of any float dtype on any
    device; returns n x k float32 on that device (f16/bf16 inputs are widened exactly, sums
    are float32). P is kept per device when it fits in cache_bytes (rademacher: d·k·4
    bytes; sjlt: d·s·16); block_bytes bounds the part of P made at once otherwise."""

    def __init__(self, kind, input_dim, dim, seed, s=None, block_bytes=1 << 26,
                 cache_bytes=1 << 28):
        if kind not in ("rademacher", "sjlt", "none"):
            raise ValueError("kind: expected rademacher, sjlt or none, got %r" % (kind,))
        if int(input_dim) < 1 or int(dim) < 1:
            raise ValueError("input_dim, dim: must be at least 1")
        if kind == "none" and int(dim) != int(input_dim):
            raise ValueError("dim: kind none needs dim == input_dim")
        if kind == "sjlt":
            s = 1 if s is None else int(s)
            if s < 1 or int(dim) % s != 0:
                raise ValueError("s: must be at least 1 and divide dim=%d" % int(dim))
        self.kind, self.d, self.k, self.seed, self.s = kind, int(input_dim), int(dim), seed, s
        _seed_key(seed)
        self.block_bytes = int(block_bytes)
        self.cache_bytes = int(cache_bytes)
        self._cache = {}  # device -> P (rademacher) or (buckets, signs) (sjlt)

    def _part(self, j0, j1, device):
        if self.kind == "rademacher":
            return rademacher_rows(j0, j1, self.k, self.seed, device=device)
        return sjlt_rows(j0, j1, self.k, self.seed, self.s, device=device)

    def _whole(self, device):
        """P for every row, kept, or None when it does not fit in cache_bytes."""
        size = self.d * (self.k * 4 if self.kind == "rademacher" else self.s * 16)
        if size > self.cache_bytes:
            return None
        key = str(device)
        if key not in self._cache:
            step = max(1, self.block_bytes // (8 * self._row_entries()))
            parts = [self._part(j0, min(self.d, j0 + step), device)
                     for j0 in range(0, self.d, step)]
            if self.kind == "rademacher":
                self._cache[key] = torch.cat(parts)
            else:
                self._cache[key] = (torch.cat([b for b, _ in parts]),
                                    torch.cat([g for _, g in parts]))
        return self._cache[key]

    def _row_entries(self):
        return self.k if self.kind == "rademacher" else max(self.s, 1)

    def _apply(self, out, x, part):
        if self.kind == "rademacher":
            out += x @ part
            return
        buckets, signs = part
        scale = 1.0 / math.sqrt(self.s)
        for t in range(self.s):
            out.index_add_(1, buckets[:, t], x * (signs[:, t] * scale).to(torch.float32))

    def __call__(self, grads):
        g = torch.as_tensor(grads)
        if g.dim() != 2 or g.shape[1] != self.d:
            raise ValueError("grads: expected n x %d, got %s" % (self.d, tuple(g.shape)))
        if not g.is_floating_point():
            raise ValueError("grads: expected a float tensor, got %s" % g.dtype)
        if not bool(torch.isfinite(g).all()):
            raise ValueError("grads: NaN or Inf")
        if self.kind == "none":
            return g.to(torch.float32)
        out = torch.zeros(g.shape[0], self.k, dtype=torch.float32, device=g.device)
        whole = self._whole(g.device)
        if whole is not None:
            self._apply(out, g.to(torch.float32), whole)
            return out
        # rows of P per block: the int64 temporaries of a block take about 8 bytes an entry
        step = max(1, self.block_bytes // (8 * self._row_entries()))
        for j0 in range(0, self.d, step):
            j1 = min(self.d, j0 + step)
            self._apply(out, g[:, j0:j1].to(torch.float32), self._part(j0, j1, g.device))
        return out
