"""tests/mutants.py stays runnable: each mutant's code is found exactly once where it says (the code moves on)."""
import pytest

import mutants
from conftest import ROOT


@pytest.mark.parametrize("k", range(len(mutants.MUTANTS)), ids=lambda k: f"{k}: {mutants.MUTANTS[k][1]}")
def test_each_mutant_applies_to_exactly_one_place(k):
    file, _, old, new = mutants.MUTANTS[k]
    assert old != new and (ROOT / file).read_text().count(old) == 1, f"update mutant {k} in tests/mutants.py"


def test_the_tests_the_mutants_leave_out_are_only_those_that_read_git():
    """mutants.py runs in a copy without .git and deselects tests named *committed*: a test of that name that
    builds its own files (a tmp_path or a scratch repo) would be dropped silently and let mutants live."""
    import ast
    for name in mutants.TESTS:
        for node in ast.walk(ast.parse((ROOT / name).read_text())):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test") and "committed" in node.name:
                own = {a.arg for a in node.args.args} & {"tmp_path", "repo", "data", "tmp_path_factory"}
                assert not own, f"{name}::{node.name} uses {own}: rename it (mutants.py skips *committed* tests)"
