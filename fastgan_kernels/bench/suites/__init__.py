"""The benchmark suites, one module per op; each module defines ``SUITE`` (a registry.Suite).

Adding an op's benchmark (block-sparse, int8, ...):

1. ``bench/suites/<op>.py`` defines ``SUITE = Suite(...)``: ``make_case`` (shape dict,
   dtype, device -> Case with its FLOPs, bytes and, for sparse ops, ``nonzero_flops``),
   ``default_cases``, ``make_inputs``, ``reference`` (float32 compute), ``dtypes`` per
   device, and its providers: ``providers.eager(fn)``, ``providers.compiled(fn)``, any
   peers (``Provider(name, "peer", build, skip_reason)``: torch.sparse BSR, dynamic int8,
   torchao, ...), and ``providers.fastgan_backends(fn, ext_op)``. Ops whose outputs are
   not compared with the float tolerances (int8) pass ``compare=`` (it may return a fourth
   item, a dict of row figures such as ``sqnr_db`` / ``psnr_db``); speed targets over eager go in
   ``targets``. Optional: ``full_cases`` (the ``--full`` grid, also what ``pytest benchmarks``
   runs), ``timing`` (per case set, e.g. a shorter ``min_run_time`` for the default set: the whole
   default run must stay within 5 minutes on the 2-core CPU), ``peer_group`` / ``peer_label``
   (every row's speed-up over the fastest of those peers in the same case), ``checks`` (the suite's
   own target lines, ``summary.suite_check``), and ``Case.images`` for whole-model cases (images/s).
   block_sparse_linear.py and int8_linear.py use all of them.
2. Add ``"<op>"`` to ``SUITE_MODULES`` below.
3. ``benchmarks/test_<op>.py``::

       from fastgan_kernels.bench.pytest_plugin import bench_op
       test_<op> = bench_op("<op>")
"""
SUITE_MODULES = (
    "fused_linear",
    "block_sparse_linear",
    "int8_linear",
    "block_sparse_sweep",
    "converted_models",
    "block_sparse_int8",
    "generator",
)
