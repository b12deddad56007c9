"""Every public class docstring example runs (doctest)."""

import doctest
import importlib

import pytest

MODULES = ["tfgpt2.config", "tfgpt2.cache", "tfgpt2.outputs", "tfgpt2.tokenizer", "tfgpt2.modeling",
           "tfgpt2.text_graph", "tfgpt2.generation.screen", "tfgpt2.generation.config"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0, result
