"""bench/peaks.py: benchmark rows as fractions of the detected GPU's datasheet peaks."""
from fastgan_kernels.bench import peaks
from fastgan_kernels.bench.report import Report, Row


def _report(*rows, gpu="NVIDIA H200"):
    r = Report(machine={"gpu": {"name": gpu, "available": True}})
    r.rows = list(rows)
    return r.to_dict()


def _row(op, dtype, tflops, gbps, provider="fastgan:triton", **kw):
    return Row(op=op, case=f"{op}-M1024", shape={}, dtype=dtype, device="cuda", provider=provider,
               kind="fastgan", median_s=1e-3, tflops=tflops, gbps=gbps, **kw)


def test_gpu_lookup_by_name():
    assert peaks.peaks_for("NVIDIA H100 PCIe")[0] == "H100 PCIe"
    assert peaks.peaks_for("NVIDIA H100 80GB HBM3")[0] == "H100"
    assert peaks.peaks_for("NVIDIA L4")[0] == "L4" and peaks.peaks_for("NVIDIA L40S")[0] == "L40S"
    assert peaks.peaks_for("Some Future GPU") is None and peaks.peaks_for(None) is None


def test_fractions_pick_the_dtype_peak():
    h200 = peaks.peaks_for("NVIDIA H200")[1]
    fp16 = _encode(_row("fused_linear", "float16", 98.9, 2400.0))
    assert peaks.fractions(fp16, h200) == (98.9 / 989.0, 0.5)
    fp32 = _encode(_row("fused_linear", "float32", 33.5, None))
    assert peaks.fractions(fp32, h200) == (0.5, None)  # exact fp32: the FMA peak, not TF32
    i8 = _encode(_row("int8_linear", "float32", 197.9, 480.0))
    assert peaks.fractions(i8, h200) == (0.1, 0.1)
    sparse = _encode(_row("block_sparse_linear", "float16", 500.0, 48.0, nonzero_tflops=49.45))
    assert peaks.fractions(sparse, h200)[0] == 0.05  # the work done: kept blocks only


def test_table_prints_fractions_or_says_why_not():
    text = peaks.table(_report(_row("fused_linear", "bfloat16", 494.5, 4800.0)))
    assert "peaks of H200" in text and "50.0%" in text and "100.0%" in text
    text = peaks.table(_report(_row("fused_linear", "bfloat16", 1.0, 1.0), gpu="Mystery GPU"))
    assert "not in the peak table" in text


def _encode(row):
    return _report(row)["rows"][0]
