"""Every public class docstring example runs (doctest)."""

import doctest
import importlib

import pytest

MODULES = ["tfgpt2.config", "tfgpt2.cache", "tfgpt2.outputs", "tfgpt2.tokenizer", "tfgpt2.modeling",
           "tfgpt2.text_graph", "tfgpt2.generation.screen", "tfgpt2.generation.decode_config",
           "tfgpt2.generation.generation_config", "tfgpt2.pretrained", "tfgpt2.distribute"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0, result


def test_readme_quickstart_runs():
    """The README's quickstart block (between the quickstart markers), as a doctest."""
    import os
    import re

    from helpers import ROOT

    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    block = re.search(r"<!-- quickstart -->\n```python\n(.*?)```\n<!-- /quickstart -->", text, re.S).group(1)
    test = doctest.DocTestParser().get_doctest(block, {}, "README quickstart", "README.md", 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    assert runner.summarize().attempted >= 5 and runner.summarize().failed == 0
