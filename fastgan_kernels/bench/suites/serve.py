"""serve: the generator service under load -- ``fastgan-kernels bench --suite serve``.

Not an op suite (no providers timed on tensors): a whole-system run. For the seed and the
wide generator (both int8, converted the way ``convert --quantize int8`` does it, random
weights), the same server is started twice, batching on and batching off, and driven over
loopback by the async load generator (``serve.loadgen``) at each concurrency x request size.
Each run is bounded in requests and seconds. The model's own throughput at batch 32 (no HTTP,
no queue, in this process) is measured in the same run, right after the concurrency-32 n = 1
case, while both servers sit idle. Target lines:

* wide G, concurrency 32, n = 1: batched images/s >= 5x unbatched, and >= 50% of the model's
  offline throughput at batch 32;
* zero failed requests in every load run;
* seed G: where a request's time goes (queue wait, model call, HTTP and handling).

Both servers of a model run side by side and each case is measured on one, then the other.
The grid is opt-in from ``make bench`` (``make bench-serve``): it starts four servers and
takes a few minutes on the 2-core CPU; ``--quick`` runs concurrency 1 and 32 at n = 1 only.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Optional

MODELS = ("seed", "wide")
GRIDS = {  # case set -> (concurrencies, request sizes, seconds per run, requests per run at most)
    "quick": ((1, 32), (1,), 2.0, 2000),
    "default": ((1, 8, 32), (1, 16), 3.0, 3000),
    "full": ((1, 8, 32), (1, 16), 8.0, 20000),
}
MAX_BATCH, MAX_WAIT_MS = 32, 5.0
TARGET_SPEEDUP, TARGET_OFFLINE_SHARE = 5.0, 0.5


def _serve_args(path: str, batching: bool, device: str, threads: Optional[int] = None) -> list[str]:
    args = ["--checkpoint", path, "--device", device, "--max-batch", str(MAX_BATCH), "--max-wait-ms", str(MAX_WAIT_MS)]
    return args + ([] if batching else ["--no-batching"]) + (["--threads", str(threads)] if threads else [])


def run(case_set: str = "default", device: str = "cpu", models=MODELS, progress=print,
        threads: Optional[int] = None) -> dict:
    from ...serve.checkpoints import offline_images_per_s, write_compressed
    from ...serve.loadgen import load
    from ...serve.process import ServerProcess

    concurrencies, sizes, seconds, max_requests = GRIDS[case_set]
    result = {"case_set": case_set, "device": device, "max_batch": MAX_BATCH, "max_wait_ms": MAX_WAIT_MS,
              "threads": threads, "models": {}, "runs": []}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fastgan-serve-bench-") as tmp:
        for model in models:
            path = os.path.join(tmp, f"{model}_int8.pt")
            info = write_compressed(path, model, int8=True)
            result["models"][model] = {"psnr_db_vs_fp32": info["psnr_db_vs_uncompressed"]}
            # Both servers up at once and driven in turns, case by case: on a shared machine the
            # batched and unbatched figures of a case are then measured under the same load.
            with ServerProcess(_serve_args(path, True, device, threads)) as on, \
                    ServerProcess(_serve_args(path, False, device, threads)) as off:
                servers = ((True, on), (False, off))
                for _, srv in servers:
                    load(srv.url, 8, 1, max_requests=200, max_seconds=0.5)  # warm-up, not recorded
                for c in concurrencies:
                    for n in sizes:
                        for batching, srv in servers:
                            r = load(srv.url, c, n, max_requests=max_requests, max_seconds=seconds)
                            row = dict(r.summary(), model=model, batching=batching)
                            result["runs"].append(row)
                            progress(f"  {model} {'batched  ' if batching else 'unbatched'} c={c:<2} n={n:<2} "
                                     f"{row['images_per_s']:9,.0f} images/s  p99 {row['p99_ms'] or 0:7.1f} ms  "
                                     f"failed {row['failed']}")
                        if c == concurrencies[-1] and n == 1:  # the model alone, right after its service runs
                            for b in (MAX_BATCH, 1):  # batch 1 bounds what batching can gain at all
                                offline = offline_images_per_s(path, b, seconds=2.0, device=device,
                                                               threads=threads)
                                result["models"][model][f"offline_images_per_s_batch{b}"] = offline
                                progress(f"  {model} offline (no HTTP, no queue) {offline:9,.0f} images/s at "
                                         f"batch {b}")
    result["duration_s"] = time.perf_counter() - start
    result["targets"] = checks(result)
    return result


def _find(result: dict, model: str, batching: bool, c: int, n: int):
    for r in result["runs"]:
        if (r["model"], r["batching"], r["concurrency"], r["n"]) == (model, batching, c, n):
            return r
    return None


def checks(result: dict) -> list[dict]:
    lines = []
    on, off = _find(result, "wide", True, 32, 1), _find(result, "wide", False, 32, 1)
    if on and off and off["images_per_s"]:
        ratio = on["images_per_s"] / off["images_per_s"]
        lines.append({"name": "wide G, c=32, n=1: batched vs unbatched images/s", "value": ratio,
                      "target": TARGET_SPEEDUP, "met": ratio >= TARGET_SPEEDUP,
                      "text": f"{on['images_per_s']:,.0f} vs {off['images_per_s']:,.0f} images/s = {ratio:.2f}x"})
        offline = result["models"]["wide"]["offline_images_per_s_batch32"]
        share = on["images_per_s"] / offline if offline else 0.0
        lines.append({"name": "wide G, c=32, n=1: batched service vs the model offline at batch 32", "value": share,
                      "target": TARGET_OFFLINE_SHARE, "met": share >= TARGET_OFFLINE_SHARE,
                      "text": f"{on['images_per_s']:,.0f} vs {offline:,.0f} images/s = {100 * share:.0f}%"})
    failed = sum(r["failed"] for r in result["runs"])
    lines.append({"name": "failed requests over every load run", "value": failed, "target": 0, "met": failed == 0,
                  "text": f"{failed} of {sum(r['requests'] for r in result['runs'])}"})
    for r in result["runs"]:
        if r["model"] == "seed" and r["breakdown_ms"]:
            b = r["breakdown_ms"]
            lines.append({"name": f"seed G where the time goes ({'batched' if r['batching'] else 'unbatched'}, "
                                  f"c={r['concurrency']}, n={r['n']})", "value": None, "target": None, "met": None,
                          "text": f"total {b['total']:.2f} ms = queue {b['queue']:.2f} + model {b['model']:.2f} "
                                  f"+ HTTP and handling {b['http_and_handling']:.2f}"})
    return lines


def render(result: dict) -> str:
    threads = f", {result['threads']} model thread(s)" if result.get("threads") else ""
    out = [f"serve load test ({result['case_set']}, {result['device']}, max batch {result['max_batch']}, "
           f"max wait {result['max_wait_ms']:g} ms{threads}; {result.get('duration_s', 0):.0f} s)", "",
           "| model | batching | concurrency | n | requests/s | images/s | p50 ms | p90 ms | p99 ms | batch sizes seen "
           "| failed |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["runs"]:
        sizes = ", ".join(f"{k}x{v}" for k, v in sorted(r["batch_sizes"].items(), key=lambda kv: int(kv[0])))
        out.append(f"| {r['model']} int8 | {'on' if r['batching'] else 'off'} | {r['concurrency']} | {r['n']} | "
                   f"{r['requests_per_s']:,.0f} | {r['images_per_s']:,.0f} | {r['p50_ms'] or 0:.1f} | "
                   f"{r['p90_ms'] or 0:.1f} | {r['p99_ms'] or 0:.1f} | {sizes} | {r['failed']} |")
    for model, m in result["models"].items():
        if "offline_images_per_s_batch1" in m:
            out.append(f"\n{model} int8 offline (the model alone): {m['offline_images_per_s_batch32']:,.0f} images/s "
                       f"at batch {result['max_batch']}, {m['offline_images_per_s_batch1']:,.0f} at batch 1; "
                       f"PSNR vs fp32 {m['psnr_db_vs_fp32']:.1f} dB")
    out.append("")
    for t in result["targets"]:
        status = "" if t["met"] is None else (" -- met" if t["met"] else " -- NOT MET")
        target = "" if t["target"] is None else f" (target {'>=' if t['target'] else '=='} {t['target']})"
        out.append(f"- target {t['name']}: {t['text']}{target}{status}")
    return "\n".join(out)


def main(args) -> int:
    """``fastgan-kernels bench --suite serve [--quick | --full] [--device D] [--json F] [--markdown F]``."""
    import sys

    device = args.device if args.device != "auto" else ("cuda" if _cuda() else "cpu")
    case_set = "quick" if args.quick else "full" if args.full else "default"
    result = run(case_set, device, progress=lambda s: print(s, file=sys.stderr, flush=True), threads=args.threads)
    text = render(result)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1, default=str)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text + "\n")
    return 1 if any(r["failed"] for r in result["runs"]) else 0


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
