"""Every setting of the generator service, in one dataclass (the CLI's flags map onto it)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

RUNNERS = ("auto", "compiled", "converted")


@dataclass
class ServeConfig:
    checkpoint: str
    host: str = "127.0.0.1"               # loopback unless told otherwise: nothing is exposed by accident
    port: int = 8000
    device: str = "cpu"
    runner: str = "auto"                  # auto: compile_generator where it exists and accepts the model
    threads: Optional[int] = None         # torch intra-op threads of the model call (None: torch's choice)
    # Dynamic batching: gather up to max_batch images or max_wait_ms, whichever comes first.
    batching: bool = True
    max_batch: int = 32
    max_wait_ms: float = 5.0
    # Limits (each violation is a 4xx with a JSON message).
    max_n: int = 256
    max_body_bytes: int = 16 * 1024
    max_queue_images: int = 4096           # beyond this the service answers 503 instead of queueing forever
    # Access control.
    api_keys_file: Optional[str] = None
    rate_limit: float = 0.0               # requests per second per key (0: off)
    rate_burst: int = 0                   # bucket size (0: max(1, 2 * rate_limit))
    # TLS, passed to uvicorn as they are.
    ssl_certfile: Optional[str] = None
    ssl_keyfile: Optional[str] = None
    log_level: str = "info"
    warmup: bool = True
    extra: dict = field(default_factory=dict)

    def validate(self) -> "ServeConfig":
        problems = []
        if self.runner not in RUNNERS:
            problems.append(f"runner must be one of {RUNNERS}, got {self.runner!r}")
        if self.max_batch < 1:
            problems.append(f"max_batch must be >= 1, got {self.max_batch}")
        if self.max_wait_ms < 0:
            problems.append(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")
        if self.threads is not None and self.threads < 1:
            problems.append(f"threads must be >= 1, got {self.threads}")
        if self.max_n < 1:
            problems.append(f"max_n must be >= 1, got {self.max_n}")
        if self.max_body_bytes < 64:
            problems.append(f"max_body_bytes must be >= 64, got {self.max_body_bytes}")
        if self.rate_limit < 0 or self.rate_burst < 0:
            problems.append("rate_limit and rate_burst must be >= 0")
        if not 0 <= self.port <= 65535:
            problems.append(f"port must be in [0, 65535], got {self.port}")
        if bool(self.ssl_certfile) != bool(self.ssl_keyfile):
            problems.append("TLS needs both ssl_certfile and ssl_keyfile")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def effective_burst(self) -> int:
        return self.rate_burst or max(1, int(round(2 * self.rate_limit)))
