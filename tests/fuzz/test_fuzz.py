"""Boundary fuzzing: every public function and model method against the NumPy
reference, over generated dtypes, layouts, sizes, values and bad arguments
(see tests/fbp_fuzz/__init__.py for the property and how to add an entry).

FASTBP_FUZZ_EXAMPLES=N sets the examples per entry (default 25)."""
import pytest
from hypothesis import given, strategies as st

from fbp_fuzz import FUZZ_SETTINGS
from fbp_fuzz.spec import check
from fbp_fuzz.table import ENTRIES


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.id for e in ENTRIES])
def test_any_input_is_refused_by_name_or_equals_the_reference(entry):
    @FUZZ_SETTINGS
    @given(data=st.data())
    def run(data):
        check(entry, data)
    run()
