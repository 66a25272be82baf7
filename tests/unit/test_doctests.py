"""The examples in the package's docstrings are tests too."""

import doctest
import importlib
import pkgutil

import pytest

import preloader

MODULES = [
    info.name for info in pkgutil.iter_modules(preloader.__path__, "preloader.") if info.name != "preloader.__main__"
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_hold(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
