"""``fastgan-kernels serve``: the generator behind HTTP (one process), or on Ray Serve (``--ray``).

    fastgan-kernels serve --checkpoint g.pt                          # http://127.0.0.1:8000
    fastgan-kernels serve --checkpoint g.pt --api-keys-file keys.txt --rate-limit 20
    fastgan-kernels serve --new-key alice >> keys.txt                # prints the key on stderr
    fastgan-kernels serve --checkpoint g.pt --host 0.0.0.0 --ssl-certfile c.pem --ssl-keyfile k.pem
    fastgan-kernels serve --checkpoint g.pt --ray --ray-max-replicas 4
"""
from __future__ import annotations

import argparse
import sys

from .config import RUNNERS, ServeConfig


def add_parser(subparsers) -> None:
    d = ServeConfig(checkpoint="")
    p = subparsers.add_parser("serve", help="serve a generator over HTTP (dynamic batching, metrics, API keys)",
                              description="POST /v1/generate, GET /v1/model, /healthz, /readyz, /metrics. "
                                          "Binds to loopback unless --host says otherwise. Needs the `serve` "
                                          "extra (and `ray` for --ray).")
    p.add_argument("--checkpoint", metavar="F", help="a `convert` output or a training checkpoint")
    p.add_argument("--host", default=d.host, help=f"address to bind (default {d.host}: loopback only)")
    p.add_argument("--port", type=int, default=d.port, help=f"port (default {d.port})")
    p.add_argument("--device", default=d.device, help="cpu (default) or cuda[:i]")
    p.add_argument("--runner", choices=RUNNERS, default=d.runner,
                   help="auto (default): fastgan_kernels.compile_generator where it accepts the model, else the "
                        "converted model; compiled: require it; converted: never use it")
    p.add_argument("--threads", type=int, metavar="N",
                   help="torch intra-op threads for the model call (default: torch's choice)")
    p.add_argument("--max-batch", type=int, default=d.max_batch, help=f"images per model call (default {d.max_batch})")
    p.add_argument("--max-wait-ms", type=float, default=d.max_wait_ms,
                   help=f"longest a request waits for its batch to fill (default {d.max_wait_ms:g})")
    p.add_argument("--no-batching", action="store_true", help="one model call per request (the baseline)")
    p.add_argument("--max-n", type=int, default=d.max_n, help=f"images per request (default {d.max_n})")
    p.add_argument("--max-body-bytes", type=int, default=d.max_body_bytes,
                   help=f"request body limit (default {d.max_body_bytes})")
    p.add_argument("--max-queue-images", type=int, default=d.max_queue_images,
                   help=f"images waiting before requests get 503 (default {d.max_queue_images})")
    p.add_argument("--api-keys-file", metavar="F", help="NAME:SHA256 lines (see --new-key); keys required if set")
    p.add_argument("--rate-limit", type=float, default=0.0, metavar="R", help="requests/s per key (default 0: off)")
    p.add_argument("--rate-burst", type=int, default=0, metavar="B", help="burst per key (default 2 x rate)")
    p.add_argument("--ssl-certfile", metavar="PEM", help="TLS certificate (uvicorn's ssl_certfile)")
    p.add_argument("--ssl-keyfile", metavar="PEM", help="TLS private key (uvicorn's ssl_keyfile)")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    p.add_argument("--access-log", action="store_true", help="log every request line (never headers or keys)")
    p.add_argument("--no-warmup", action="store_true", help="ready without warm-up calls")
    p.add_argument("--new-key", metavar="NAME",
                   help="print a keys-file line for a fresh key NAME on stdout, the key itself on stderr, and exit")
    ray = p.add_argument_group("Ray Serve (--ray)")
    ray.add_argument("--ray", action="store_true", help="run as a Ray Serve deployment instead of one process")
    ray.add_argument("--ray-address", default=None, help="Ray cluster to join (default: start a local one)")
    ray.add_argument("--ray-min-replicas", type=int, default=1)
    ray.add_argument("--ray-max-replicas", type=int, default=2)
    ray.add_argument("--ray-target-ongoing", type=float, default=16.0,
                     help="autoscaling target: ongoing requests per replica (default 16)")
    ray.add_argument("--ray-cpus-per-replica", type=float, default=1.0)
    p.set_defaults(func=main)


def config_from_args(args: argparse.Namespace) -> ServeConfig:
    return ServeConfig(
        checkpoint=args.checkpoint, host=args.host, port=args.port, device=args.device, runner=args.runner,
        threads=args.threads,
        batching=not args.no_batching, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_n=args.max_n,
        max_body_bytes=args.max_body_bytes, max_queue_images=args.max_queue_images,
        api_keys_file=args.api_keys_file, rate_limit=args.rate_limit, rate_burst=args.rate_burst,
        ssl_certfile=args.ssl_certfile, ssl_keyfile=args.ssl_keyfile, log_level=args.log_level,
        warmup=not args.no_warmup).validate()


def main(args: argparse.Namespace) -> int:
    if args.new_key:
        from .auth import new_key

        key, line = new_key(args.new_key)
        print(line)
        print(f"API key for {args.new_key} (shown once, store it safely): {key}", file=sys.stderr)
        return 0
    try:
        if not args.checkpoint:
            raise ValueError("--checkpoint is required")
        config = config_from_args(args)
        if args.ray:
            from .ray_app import run_ray

            return run_ray(config, address=args.ray_address, min_replicas=args.ray_min_replicas,
                           max_replicas=args.ray_max_replicas, target_ongoing=args.ray_target_ongoing,
                           cpus_per_replica=args.ray_cpus_per_replica)
        from .app import run

        return run(config, access_log=args.access_log)
    except ImportError as exc:
        extra = "ray" if args.ray else "serve"
        print(f"fastgan-kernels serve: {exc}; install it with pip install 'fastgan-kernels[{extra}]'", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"fastgan-kernels serve: {exc}", file=sys.stderr)
        return 2
