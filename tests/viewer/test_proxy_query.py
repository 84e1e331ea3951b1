"""The proxy's query rewriting: a comma-separated includefield becomes one parameter per field."""

from __future__ import annotations

import pytest

pytest.importorskip("monailabel")

from cardiac_mi.viewer.proxy import split_include_fields  # noqa: E402


@pytest.mark.parametrize(
    "query, expected",
    [
        ("includefield=00081030%2C00080060&limit=101", "includefield=00081030&includefield=00080060&limit=101"),
        ("includefield=00081030,00080060", "includefield=00081030&includefield=00080060"),
        ("limit=25&IncludeField=StudyDescription", "limit=25&IncludeField=StudyDescription"),
        ("PatientName=a%2Cb&limit=1", "PatientName=a%2Cb&limit=1"),  # other lists pass unchanged
        ("", ""),
    ],
)
def test_split_include_fields(query, expected):
    assert split_include_fields(query) == expected
