"""tests/mutants.py stays runnable: each mutant's code is found exactly once where it says (the code moves on)."""
import pytest

import mutants
from conftest import ROOT


@pytest.mark.parametrize("k", range(len(mutants.MUTANTS)), ids=lambda k: f"{k}: {mutants.MUTANTS[k][1]}")
def test_each_mutant_applies_to_exactly_one_place(k):
    file, _, old, new = mutants.MUTANTS[k]
    assert old != new and (ROOT / file).read_text().count(old) == 1, f"update mutant {k} in tests/mutants.py"
