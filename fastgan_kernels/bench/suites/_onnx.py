"""ONNX Runtime, the deployment peer of the generator suite: export once, run with the same thread count.

Export: ``torch.onnx.export(model, (z,), path, dynamic_axes=batch, dynamo=False)``; int8:
``onnxruntime.quantization.quantize_dynamic(path, out, weight_type=QInt8)`` (per-tensor u8
activations quantised at run time, int8 weights). Sessions get ``intra_op_num_threads`` =
torch's thread count and every graph optimisation. Both are made once per model and cached
(the wide generator's export and quantisation take seconds).
"""
from __future__ import annotations

import functools
import logging
import os
import tempfile
import warnings

import torch
from torch import nn

_DIR = tempfile.mkdtemp(prefix="fastgan-onnx-")


@functools.lru_cache(maxsize=None)
def reason() -> str:
    """Empty when onnx and onnxruntime (with its quantisation tools) import, else why not."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        from onnxruntime.quantization import QuantType, quantize_dynamic  # noqa: F401
    except ImportError as exc:
        return f"ONNX Runtime is not installed ({exc}); pip install 'fastgan-kernels[bench]'"
    except Exception as exc:  # noqa: BLE001 - a broken install
        return f"ONNX Runtime failed to import: {type(exc).__name__}: {exc}"[:300]
    return ""


def _export(model: nn.Module, in_features: int, path: str) -> None:
    z = torch.zeros(2, in_features)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (z,), path, input_names=["z"], output_names=["y"],
                          dynamic_axes={"z": {0: "batch"}, "y": {0: "batch"}}, dynamo=False)


@functools.lru_cache(maxsize=None)
def model_path(key: str, model: nn.Module, in_features: int, int8: bool) -> str:
    """The exported (and for int8, dynamically quantised) ONNX file of ``model``, made once per key."""
    fp32 = os.path.join(_DIR, f"{key}.onnx")
    if not os.path.exists(fp32):
        _export(model, in_features, fp32)
    if not int8:
        return fp32
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = os.path.join(_DIR, f"{key}.int8.onnx")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its advice to pre-process the model (shape inference) is for CNNs
    try:
        quantize_dynamic(fp32, out, weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)
    return out


def session_call(path: str, z: torch.Tensor):
    """A zero-argument callable running the ONNX model on ``z`` (numpy views, no copies)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = torch.get_num_threads()
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    feed = {"z": z.contiguous().numpy()}
    return lambda: torch.from_numpy(sess.run(None, feed)[0])
