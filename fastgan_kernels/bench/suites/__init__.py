"""The benchmark suites, one module per op; each module defines ``SUITE`` (a registry.Suite).

To add an op's benchmark: write ``bench/suites/<op>.py`` and add ``"<op>"`` below.
"""
SUITE_MODULES = (
    "fused_linear",
)
