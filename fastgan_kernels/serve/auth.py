"""API keys and per-key rate limits.

Keys file: one key per line as ``NAME:SHA256HEX`` (``#`` comments and blank lines ignored).
Only the SHA-256 of each key is stored: keys are random 256-bit tokens (``new_key``), so a
fast hash is enough (no dictionary to attack) and a leaked file does not leak the keys. A
presented key is hashed and compared with *every* stored hash by ``hmac.compare_digest``,
so neither the comparison nor the loop ends early on a partial match. Keys are never logged:
error messages name a line number, never its content.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Mapping, Optional

_HEX = set("0123456789abcdef")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key(name: str) -> tuple[str, str]:
    """(a fresh key to give the client, the ``NAME:HASH`` line for the keys file)."""
    if not name or ":" in name or any(c.isspace() for c in name):
        raise ValueError(f"key name must be non-empty without ':' or spaces, got {name!r}")
    key = "fgk_" + secrets.token_urlsafe(32)
    return key, f"{name}:{hash_key(key)}"


def load_keys(path: str) -> dict[str, str]:
    """{hash: name} from a keys file; a malformed line is an error naming its number only."""
    keys: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, sep, digest = line.partition(":")
            digest = digest.strip().lower()
            if not sep or not name.strip() or len(digest) != 64 or not set(digest) <= _HEX:
                raise ValueError(f"{path}: line {number} is not NAME:SHA256HEX (64 hex digits)")
            keys[digest] = name.strip()
    if not keys:
        raise ValueError(f"{path}: no keys in the file (lines look like NAME:SHA256HEX)")
    return keys


def presented_key(headers: Mapping[str, str]) -> Optional[str]:
    """The key a request carries: ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``."""
    auth = headers.get("authorization")
    if auth and auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return headers.get("x-api-key")


class KeyChecker:
    """Who a key belongs to, in constant time over the stored hashes."""

    def __init__(self, hashes: Mapping[str, str]):
        self._items = [(bytes.fromhex(h), name) for h, name in hashes.items()]

    def identify(self, key: Optional[str]) -> Optional[str]:
        digest = hashlib.sha256((key or "").encode("utf-8")).digest()
        found = None
        for stored, name in self._items:  # no early exit: the time does not depend on which key matched
            if hmac.compare_digest(stored, digest) and key is not None:
                found = name
        return found


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    """A token bucket per key: ``rate`` requests per second, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: int, clock=time.monotonic):
        self.rate, self.burst, self.clock = rate, burst, clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()  # Ray replicas may call from several threads

    def acquire(self, who: str) -> float:
        """0.0 if ``who`` may go now, else the seconds until a token is free (the Retry-After)."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        with self._lock:
            b = self._buckets.get(who)
            if b is None:
                b = self._buckets[who] = _Bucket(float(self.burst), now)
            b.tokens = min(float(self.burst), b.tokens + (now - b.stamp) * self.rate)
            b.stamp = now
            if b.tokens >= 1.0:
                b.tokens -= 1.0
                return 0.0
            return (1.0 - b.tokens) / self.rate
