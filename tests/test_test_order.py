"""The suite's own scheduling: slow tests start first, dealt out so that pytest-xdist's workers finish together."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.conftest import spread_slow_tests_first

pytestmark = pytest.mark.orchestration


@dataclass
class Marker:
    args: tuple[float, ...]


@dataclass
class Item:
    """What the scheduler reads of a pytest item: its name and its ``slow`` marker."""

    name: str
    slow: float | None = None

    def get_closest_marker(self, name: str) -> Marker | None:
        return Marker((self.slow,)) if name == "slow" and self.slow is not None else None


def shares(ordered: list[Item], workers: int) -> list[list[Item]]:
    """The first items each worker gets, as worksteal cuts the order: ``n // workers`` each, the rest to the last."""
    size = len(ordered) // workers
    return [ordered[i * size : (i + 1) * size if i < workers - 1 else None] for i in range(workers)]


def test_slow_tests_are_dealt_out_longest_first_to_the_least_loaded_worker_and_every_test_is_kept():
    items = [Item(f"t{i}") for i in range(12)] + [Item("a", 150), Item("b", 90), Item("c", 70), Item("d", 40)]
    ordered = spread_slow_tests_first(items, 3)  # type: ignore[arg-type]
    assert sorted(i.name for i in ordered) == sorted(i.name for i in items), "nothing lost, nothing repeated"
    first = [share[0].name for share in shares(ordered, 3)]
    assert first == ["a", "b", "c"], "each worker starts with a slow test, the slowest first"
    loads = [sum(i.slow or 0 for i in share) for share in shares(ordered, 3)]
    assert loads == [150, 90, 110], "the 40 s test goes to the least loaded worker then: the one with the 70 s test"


def test_the_order_depends_on_the_items_alone():
    items = [Item(f"t{i}", 10 * (i % 3) or None) for i in range(20)]
    once = [i.name for i in spread_slow_tests_first(list(items), 2)]  # type: ignore[arg-type]
    again = [i.name for i in spread_slow_tests_first(list(items), 2)]  # type: ignore[arg-type]
    assert once == again, "every worker collects and orders the items alike"
