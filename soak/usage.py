"""The `usage` a gateway returns against what the mock counted: a gateway that reports wrong
usage bills wrong.

The mock counts prompt tokens (the words of the messages it received) and answer tokens the
same way and records both per attempt (`prompt_tokens`, `completion_tokens`). A gateway that
passes the provider's usage through agrees with it exactly; one that recounts with its own
tokenizer, adds its own overhead or rewrites the block does not. Compared over a sample of
answered requests, looked up by nonce in the mock's trace.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from soak.results import Result
from soak.summary import Check

SAMPLE = 500
"""At most this many answered requests are compared per phase (one trace query)."""
Traces = Callable[[list[str]], Awaitable[Mapping[str, list[dict[str, Any]]]]]


@dataclass(slots=True)
class UsageCheck:
    """Counts of the comparison; `examples` are (reported, counted) pairs, never a prompt."""

    compared: int = 0
    prompt_wrong: int = 0
    completion_wrong: int = 0
    unreported: int = 0
    """Answers with no usage block (not a disagreement: nothing was billed by it)."""
    prompt_ratio: float | None = None
    """Sum reported / sum counted over the compared requests (1.0: agreement)."""
    completion_ratio: float | None = None
    examples: list[dict[str, int | None]] = field(default_factory=list)

    @property
    def wrong(self) -> int:
        return self.prompt_wrong + self.completion_wrong

    def to_dict(self) -> dict[str, Any]:
        return {
            "compared": self.compared, "prompt_wrong": self.prompt_wrong,
            "completion_wrong": self.completion_wrong, "unreported": self.unreported,
            "prompt_ratio": self.prompt_ratio, "completion_ratio": self.completion_ratio,
            "examples": self.examples,
        }  # fmt: skip

    def note(self) -> str | None:
        if not self.wrong:
            return None
        worst = max(self.prompt_wrong, self.completion_wrong)
        return (
            f"usage disagrees with the mock's count in {worst}"
            f" of {self.compared} answers (prompt tokens reported/counted"
            f" {_ratio(self.prompt_ratio)}, completion {_ratio(self.completion_ratio)}):"
            " the gateway bills by tokens the provider did not count"
        )

    def check(self) -> Check | None:
        if not self.compared:
            return None
        return Check(name="usage agrees with the mock", value=self.wrong, op="==", threshold=0,
                     unit="requests", passed=not self.wrong)  # fmt: skip


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def compare_usage(
    results: Sequence[Result], traces: Mapping[str, list[dict[str, Any]]]
) -> UsageCheck:
    """Each answered result's usage against its (last ok) attempt in `traces`."""
    out = UsageCheck()
    sums = [0, 0, 0, 0]  # prompt reported, counted; completion reported, counted
    for r in results:
        attempts = [a for a in traces.get(r.nonce or "", ()) if a.get("outcome") == "ok"]
        if not attempts or "prompt_tokens" not in attempts[-1]:
            continue
        seen = attempts[-1]
        if r.tokens_in is None and not r.tokens_out:
            out.unreported += 1
            continue
        out.compared += 1
        counted_in, counted_out = seen["prompt_tokens"], seen["completion_tokens"]
        bad_in = r.tokens_in is not None and r.tokens_in != counted_in
        bad_out = r.tokens_out != counted_out
        out.prompt_wrong += bad_in
        out.completion_wrong += bad_out
        if r.tokens_in is not None:
            sums[0] += r.tokens_in
            sums[1] += counted_in
        sums[2] += r.tokens_out
        sums[3] += counted_out
        if (bad_in or bad_out) and len(out.examples) < 5:
            out.examples.append({"prompt_reported": r.tokens_in, "prompt_counted": counted_in,
                                 "completion_reported": r.tokens_out,
                                 "completion_counted": counted_out})  # fmt: skip
    out.prompt_ratio = sums[0] / sums[1] if sums[1] else None
    out.completion_ratio = sums[2] / sums[3] if sums[3] else None
    return out


async def check_usage(
    results: Sequence[Result], traces: Traces, sample: int = SAMPLE
) -> UsageCheck:
    """Compare up to `sample` answered results, evenly spread over the run."""
    ok = [r for r in results if r.ok and r.nonce]
    step = max(1, len(ok) // sample)
    chosen = ok[::step][:sample]
    if not chosen:
        return UsageCheck()
    return compare_usage(chosen, await traces([r.nonce for r in chosen if r.nonce]))
