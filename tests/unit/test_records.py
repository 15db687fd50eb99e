"""shim.tools.records.record builds what typing.NamedTuple would, without importing typing."""

from __future__ import annotations

import pytest

from shim.tools.records import record


@record
class Point:
    """A point."""
    x: int
    y: int = 0          # defaults apply from the right, as in a NamedTuple
    label: str = ""

    def moved(self, dx: int) -> "Point":
        return self._replace(x=self.x + dx)

    @property
    def origin(self) -> bool:
        return self.x == 0 and self.y == 0


def test_a_record_is_a_named_tuple_with_its_defaults_and_methods():
    point = Point(3)
    assert point == (3, 0, "") and point.x == 3 and point.label == ""
    assert Point._fields == ("x", "y", "label")
    assert point.moved(-3).origin and not point.origin
    assert Point(1, 2, "a")._asdict() == {"x": 1, "y": 2, "label": "a"}
    assert isinstance(point, Point) and isinstance(point, tuple)
    assert Point.__doc__ == "A point." and Point.__module__ == __name__
    with pytest.raises(AttributeError):
        point.x = 4
    with pytest.raises(AttributeError):
        point.other = 1            # no __dict__: slotted like a NamedTuple


def test_a_field_without_default_after_one_with_is_refused():
    with pytest.raises(TypeError, match="fields with defaults must come last"):
        @record
        class Bad:
            a: int = 1
            b: int
