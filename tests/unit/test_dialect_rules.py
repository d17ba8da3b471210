"""One set of delimiter/NULL-text rules: config validation refuses exactly what the renderer refuses.

They had drifted: the renderer allowed a double quote in the NULL text with ``quoting = "none"``,
config validation never did. The rule kept is the stricter, documented one (docs/configuration.md:
``format.null`` must not contain the delimiter, a double quote, CR or LF, whatever the quoting),
since CSV readers treat ``"`` specially even in a file written without quoting.
"""

from __future__ import annotations

import pydantic
import pytest

from tableship.archive.csvrender import CsvDialect
from tableship.config.models import FormatSpec

CASES = [
    {},
    {"delimiter": "|"},
    {"delimiter": "\t", "null": "NULL"},
    {"delimiter": ""},
    {"delimiter": ";;"},
    {"delimiter": '"'},
    {"delimiter": "\r"},
    {"delimiter": "\n"},
    {"null": "a;b"},
    {"delimiter": ",", "null": "1,2"},
    {"delimiter": ",", "null": "1;2"},
    {"null": 'x"'},
    {"null": 'x"', "quoting": "none"},  # the drift: the renderer used to accept it
    {"null": "\r"},
    {"null": "\n", "quoting": "none"},
    {"null": "\\N", "quoting": "none"},
]


def _config_accepts(kwargs: dict) -> bool:
    try:
        FormatSpec(**kwargs)
    except pydantic.ValidationError:
        return False
    return True


def _renderer_accepts(kwargs: dict) -> bool:
    try:
        CsvDialect(**kwargs)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("kwargs", CASES, ids=repr)
def test_config_and_renderer_agree(kwargs):
    assert _config_accepts(kwargs) == _renderer_accepts(kwargs)


def test_a_quote_in_the_null_text_is_refused_whatever_the_quoting():
    for quoting in ("minimal", "none"):
        assert not _renderer_accepts({"null": 'x"', "quoting": quoting})
        with pytest.raises(pydantic.ValidationError, match="contains the quote character"):
            FormatSpec(null='x"', quoting=quoting)
