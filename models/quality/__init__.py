"""Data-quality gates: Great Expectations suites kept as data in expectations/."""
