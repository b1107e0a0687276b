"""Test helpers that the library itself never imports (``fakecupy``: a CuPy stand-in for CPU-only CI)."""
