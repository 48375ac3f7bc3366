"""Per-model and per-key breakdowns: groups, the worst keys kept, counts over all keys."""

from __future__ import annotations

from soak.breakdown import KEY_ROWS, breakdown
from soak.reports.breakdown_md import breakdown_tables
from soak.results import Outcome, Result


class _Plan:
    """Model by parity, one key per request in turn over `keys` keys."""

    def __init__(self, keys: int) -> None:
        self.keys = keys

    def model_of(self, seq: int) -> str:
        return ("even", "odd")[seq % 2]

    def key_of(self, seq: int) -> str | None:
        return f"key-{seq % self.keys}" if self.keys else None


def _result(seq: int, ok: bool, overhead: float) -> Result:
    return Result(seq=seq, intended=0.0, sent=0.0, end=0.01 + overhead,
                  outcome=Outcome.OK if ok else Outcome.HTTP_429, status=200 if ok else 429,
                  service_s=0.01 if ok else None)  # fmt: skip


def test_keys_beyond_the_listed_rows_are_still_counted() -> None:
    keys = KEY_ROWS + 15
    failing = {3, 7, 20}  # key-20 is failing and also the slowest of the rest
    results = [_result(seq, seq % keys not in failing, 0.001 * (seq % keys))
               for seq in range(keys * 4)]  # fmt: skip
    parts = breakdown(results, _Plan(keys))
    assert parts["keys"] == {"keys": keys, "failing": 3, "worst_success_ratio": 0.0}
    listed = list(parts["key"])
    assert len(listed) == KEY_ROWS
    assert listed[:3] == ["key-3", "key-7", "key-20"]  # the failing ones (no overhead)
    assert listed[3] == f"key-{keys - 1}"  # the slowest of the keys that never failed
    assert set(parts["model"]) == {"even", "odd"}
    assert parts["model"]["even"]["requests"] == keys * 2
    text = "\n".join(breakdown_tables(parts, "in overhead"))
    assert f"{keys} keys, 3 with a failed request, the {KEY_ROWS} worst:" in text


def test_one_model_and_no_keys_give_nothing() -> None:
    class One(_Plan):
        def model_of(self, seq: int) -> str:
            return "only"

    results = [_result(seq, True, 0.001) for seq in range(10)]
    assert breakdown(results, One(0)) == {}
    assert breakdown(results, None) == {}
