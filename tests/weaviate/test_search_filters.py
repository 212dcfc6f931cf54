"""Search filters typed by the collection's schema (no server): `--where prop=value` strings become
the property's type, dates become datetimes, and blob properties cannot be filtered."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from imagebind_vectorizer.weaviate.errors import QueryError
from imagebind_vectorizer.weaviate.search import parse_where, typed_value


@pytest.mark.parametrize(("raw", "data_type", "expected"), [
    ("2020", "int", 2020), ("0.5", "number", 0.5), ("yes", "boolean", True), ("0", "boolean", False),
    ("2024-01-02T03:04:05Z", "date", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
    ("a", "text[]", "a"), ("3", "int[]", 3),  # an array property is filtered by one element
    ("free text", None, "free text"),
])
def test_filter_values_take_the_property_type(raw: str, data_type: str | None, expected: object) -> None:
    assert typed_value(raw, data_type, "p") == expected


def test_a_value_of_the_wrong_type_names_the_filter() -> None:
    with pytest.raises(QueryError, match=r"--where year: 'soon' is not a valid int"):
        typed_value("soon", "int", "year")
    with pytest.raises(QueryError, match="is not a valid date"):
        typed_value("yesterday", "date", "when")


def test_where_expressions_are_checked_against_the_schema() -> None:
    types = {"year": "int", "title": "text", "image": "blob"}
    assert parse_where([], types) is None
    assert parse_where(["year>=2020", "title~sun*"], types) is not None
    with pytest.raises(QueryError, match="media \\(blob\\) properties cannot be filtered"):
        parse_where(["image=x"], types)
    with pytest.raises(QueryError, match="the collection has no such property; it has title, year"):
        parse_where(["colour=red"], types)
    with pytest.raises(QueryError, match="expected PROP=VALUE"):
        parse_where(["just words"], types)
