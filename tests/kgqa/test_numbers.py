"""kgqa.numbers: which names are numbers, each entity's value, and which relations are numeric
attributes (both directions, the share threshold, bad arguments)."""
import math

import numpy as np
import pytest

from kgqa import KnowledgeBase
from kgqa.numbers import NUMERIC_MIN_SHARE, numeric_relations, numeric_values, parse_number

FILMS = """\
Heat|release_year|1995
Heat|directed_by|Michael Mann
Collateral|release_year|2004
Collateral|directed_by|Michael Mann
1408|release_year|2007
1408|directed_by|Mikael Hafstrom
Catch-22|release_year|1970
Catch-22|has_tags|1970s
Heat|has_tags|2
Collateral|has_tags|crime
1408|has_tags|horror
Catch-22|has_tags|satire
"""


@pytest.mark.parametrize("name, value", [("1999", 1999.0), ("3", 3.0), ("7.5", 7.5), ("-2", -2.0),
                                         ("1,234", 1234.0), ("1,234,567.25", 1234567.25), ("0", 0.0)])
def test_numbers(name, value):
    assert parse_number(name) == value


@pytest.mark.parametrize("name", ["1999s", "Catch-22", "2001: A Space Odyssey", "", "nan", "NaN", "inf",
                                  "-inf", "1e5", " 1999", "1999 ", "12,34", "1,2345", "1.", ".5", "--2",
                                  "1" * 400, None, 1999])
def test_not_numbers(name):
    assert parse_number(name) is None


@pytest.fixture
def films(write):
    return KnowledgeBase.load(write("films.txt", FILMS), use_cache=False)


def test_values_of_entities(films):
    v = numeric_values(films)
    assert v.dtype == np.float64 and v.shape == (films.num_entities,)
    for name, i in films.entity_ids.items():
        expect = {"1995": 1995, "2004": 2004, "2007": 2007, "1970": 1970, "1408": 1408, "2": 2}.get(name)
        assert (math.isnan(v[i]) if expect is None else v[i] == expect), name


def test_numeric_relations_both_directions(films):
    rel = films.relation_ids
    # release_year always leads to a year; its inverse leads to a film, one of four named "1408"
    assert numeric_relations(films) == [rel["release_year"]]
    assert NUMERIC_MIN_SHARE > 0.25
    # has_tags: 1 of 5 tags is a number; has_tags~inv and directed_by~inv reach "1408" 1 time in 5, 1 in 3;
    # release_year~inv 1 in 4
    assert numeric_relations(films, min_share=0.3) == [rel["release_year"], rel["directed_by~inv"]]
    assert numeric_relations(films, min_share=0.2) == sorted(
        rel[r] for r in ["release_year", "has_tags", "release_year~inv", "directed_by~inv", "has_tags~inv"])
    assert numeric_relations(films, min_share=1) == [rel["release_year"]]


@pytest.mark.parametrize("bad", [0, -0.5, 1.5, "0.9", None, True, float("nan")])
def test_bad_min_share(films, bad):
    with pytest.raises(ValueError, match="min_share"):
        numeric_relations(films, min_share=bad)
