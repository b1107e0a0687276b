"""hypothesis for the property tests where it is installed; where it is not (it is in the optional "test" extra),
stand-ins that let a test module import and mark each ``@given`` test skipped, naming the package.

    from hypothesis_or_skip import HealthCheck, assume, given, settings, st
"""
import pytest
from conftest import missing, needs_reason

if not missing("hypothesis"):
    from hypothesis import HealthCheck, assume, given, settings
    from hypothesis import strategies as st
else:
    class _Stand:
        """Stands for ``hypothesis.strategies`` and ``HealthCheck``: every attribute and call gives itself, so
        strategies built at import time (``st.lists(st.floats(0, 1))``, ``@st.composite``) cost nothing."""

        def __getattr__(self, name):
            return self

        def __call__(self, *args, **kwargs):
            return self

    st = HealthCheck = _Stand()

    def given(*args, **kwargs):
        """A property test is skipped, naming hypothesis."""
        return pytest.mark.skip(reason=needs_reason("hypothesis"))

    def settings(*args, **kwargs):
        return lambda test: test

    def assume(condition):
        return True

__all__ = ["HealthCheck", "assume", "given", "settings", "st"]
