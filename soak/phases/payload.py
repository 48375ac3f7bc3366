"""Overhead against payload size: what the gateway adds as prompts and answers grow.

Steps the prompt size (`prompt_bytes`, at the first answer length) and then the answer length
(`answer_tokens`, at the first prompt size) at one fixed, moderate `rate`. Each step is one
load through the gateway and, with `direct`, the same load straight to the mock first: the
tester's own cost per KB (encoding, loopback, the mock reading the body), the floor a gateway
cannot go below. Per step: per-request overhead percentiles, the gateway's CPU per request,
the bytes the mock received against the bytes sent (what the gateway changed on the way) and
the usage check (`soak.usage`); over the prompt steps, the slope of the p50 overhead in ms per
100 KB, the gateway's and the floor's. Requests keep the workload's structure, models and keys;
only the sizes are the step's. On demand: a few minutes of large bodies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from soak.config.fields import MAX_RATE, RATE_HINT, Section
from soak.config.workload import MAX_ANSWER_TOKENS, MAX_PROMPT_BYTES, Distribution
from soak.metric_catalogue import MetricSpec, model_label
from soak.phases.base import PhaseContext, measure, request_plan, set_mock_latency, warm_up
from soak.phases.spec import PhaseSpec, report_hook
from soak.results import Result
from soak.summary import PhaseDetails, PhaseReport, Status
from soak.usage import SAMPLE, compare_usage
from soak.verdicts import at_least, settle
from soak.workload import RequestPlan


@dataclass(frozen=True, slots=True)
class PayloadPhase:
    rate: float = 10.0
    duration: float = 5.0
    """Seconds of load per step (and per direct step)."""
    latency: float = 0.05
    prompt_bytes: tuple[int, ...] = (1024, 32768, 131072, 524288)
    answer_tokens: tuple[int, ...] = (16, 256, 2048)
    direct: bool = True
    """Measure each step straight to the mock too (the tester's own floor)."""
    warmup: float = 2.0
    timeout: float = 30.0


def _sizes(s: Section, key: str, limit: int, default: tuple[int, ...]) -> tuple[int, ...]:
    raw = s.data.get(key, list(default))
    ok = isinstance(raw, list) and 1 <= len(raw) <= 16
    if not ok or any(isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= limit
                     for v in raw):  # fmt: skip
        s.wrong_type(key, f"a list of 1 to 16 integers in 1..{limit}", raw)
    return tuple(raw)


def parse_payload(s: Section) -> PayloadPhase:
    s.only("rate", "duration", "latency", "prompt_bytes", "answer_tokens", "direct", "warmup",
           "timeout")  # fmt: skip
    d = PayloadPhase()
    rate = s.number("rate", d.rate, positive=True, at_most=MAX_RATE, hint=RATE_HINT)
    duration = s.duration("duration", d.duration, positive=True)
    prompts = _sizes(s, "prompt_bytes", MAX_PROMPT_BYTES, d.prompt_bytes)
    answers = _sizes(s, "answer_tokens", MAX_ANSWER_TOKENS, d.answer_tokens)
    steps = len(prompts) + len(answers) - 1
    s.load_bound("duration", requests=rate * duration * steps * 2, seconds=duration * steps * 2)
    return PayloadPhase(
        rate=rate, duration=duration, latency=s.duration("latency", d.latency),
        prompt_bytes=prompts, answer_tokens=answers, direct=s.boolean("direct", d.direct),
        warmup=s.duration("warmup", d.warmup),
        timeout=s.duration("timeout", d.timeout, positive=True),
    )  # fmt: skip


def steps_of(phase: PayloadPhase) -> list[tuple[int, int]]:
    """(prompt bytes, answer tokens) per step: prompts at the first answer, then answers at
    the first prompt."""
    first_answer, first_prompt = phase.answer_tokens[0], phase.prompt_bytes[0]
    out = [(p, first_answer) for p in phase.prompt_bytes]
    out += [(first_prompt, a) for a in phase.answer_tokens[1:]]
    return out


def slope_per_100kb(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of (bytes, seconds) in seconds per 100 KB (102,400 bytes)."""
    pts = [(x, y) for x, y in points if y is not None]
    if len(pts) < 2:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in pts) / sxx * 102_400


def _stat(report: PhaseReport, stat: str) -> float | None:
    dist = report.distributions.get("overhead_per_request")
    return None if dist is None else dist.get(stat)


async def _sizes_and_usage(
    ctx: PhaseContext, results: Sequence[Result], plan: RequestPlan | None
) -> dict[str, Any]:
    """Mean bytes sent and received by the mock, and the usage check, over a sample."""
    ok = [r for r in results if r.ok and r.nonce]
    chosen = ok[:: max(1, len(ok) // SAMPLE)][:SAMPLE]
    if not chosen:
        return {}
    traces = await ctx.mock.traces([r.nonce for r in chosen if r.nonce])
    received = [a[-1]["request_bytes"] for r in chosen if (a := traces.get(r.nonce or ""))
                and "request_bytes" in a[-1]]  # fmt: skip
    sent = [plan.sent_bytes(r.seq) + len(r.nonce or "") for r in chosen] if plan else []
    usage = compare_usage(chosen, traces)
    return {
        "sent_bytes": sum(sent) / len(sent) if sent else None,
        "received_bytes": sum(received) / len(received) if received else None,
        "usage": usage,
    }


@dataclass(slots=True)
class PayloadDetails(PhaseDetails):
    """The payload phase's record: a row per (prompt, answer) step, and the slopes of the p50
    overhead over the prompt sizes (seconds per 100 KB) through the gateway, straight to the
    mock (the tester's floor), and their difference."""

    steps: list[dict[str, Any]] = field(default_factory=list)
    slope_s_per_100kb: float | None = None
    floor_slope_s_per_100kb: float | None = None
    net_slope_s_per_100kb: float | None = None

    def slopes(self) -> dict[str, float | None]:
        """Basis (`gateway`, `floor`, `net`) → slope."""
        return {"gateway": self.slope_s_per_100kb, "floor": self.floor_slope_s_per_100kb,
                "net": self.net_slope_s_per_100kb}  # fmt: skip


async def run_payload(ctx: PhaseContext) -> PhaseReport:
    phase: PayloadPhase = ctx.config.phases.payload
    steps: list[dict[str, Any]] = []
    reports: list[PhaseReport] = []
    checks, notes = [], []
    for prompt, answer in steps_of(phase):
        if ctx.stop.is_set():
            notes.append("stopped early: the run was interrupted")
            break
        w = replace(ctx.config.workload, prompt_bytes=Distribution("fixed", value=prompt),
                    answer_tokens=Distribution("fixed", value=answer), replay=None,
                    variants=1)  # fmt: skip
        step_ctx = replace(ctx, config=replace(ctx.config, workload=w))
        await set_mock_latency(step_ctx, phase.latency)
        row: dict[str, Any] = {"prompt_bytes": prompt, "answer_tokens": answer}
        common = {"name": "payload", "kind": "payload", "rate": phase.rate,
                  "duration": phase.duration, "timeout": phase.timeout,
                  "params": {"prompt_bytes": prompt, "answer_tokens": answer}}  # fmt: skip
        if phase.direct:  # not observed: the floor is no gateway's overhead
            _, floor = await measure(replace(step_ctx, observe=None), target=ctx.direct, **common)
            row.update(floor_p50=_stat(floor, "p50"), floor_p99=_stat(floor, "p99"))
        if phase.warmup > 0:
            await warm_up(step_ctx, ctx.gateway, rate=phase.rate, duration=phase.warmup)
        run, report = await measure(step_ctx, target=ctx.gateway, **common)
        plan = request_plan(step_ctx, ctx.gateway)
        seen = await _sizes_and_usage(ctx, run.results, plan)
        usage = seen.pop("usage", None)
        cpu = report.process.cpu_avg / 100 * report.duration_s if report.process else None
        row.update(
            p50=_stat(report, "p50"), p90=_stat(report, "p90"), p99=_stat(report, "p99"),
            completed=report.completed, success_ratio=report.success_ratio,
            cpu_s_per_request=cpu / report.completed if cpu is not None and report.completed
            else None,
            usage=None if usage is None else usage.to_dict(), **seen,
            breakdown=report.breakdown or {},  # measure() grouped them
        )  # fmt: skip
        steps.append(row)
        reports.append(report)
        checks += [c for c in report.checks if not c.passed]
        if report.success_ratio < _MIN_SUCCESS:
            checks.append(at_least(f"success ratio at {prompt} B / {answer} tokens",
                                   report.success_ratio, _MIN_SUCCESS))  # fmt: skip
        if usage is not None and (check := usage.check()) is not None and not check.passed:
            checks.append(check)
            notes.append(f"{prompt} B / {answer} tokens: {usage.note()}")
    return payload_report(phase, steps, reports, checks, notes)


_MIN_SUCCESS = 0.99
"""A step measured on a few survivors says nothing of the gateway's cost: most must succeed."""


def payload_report(
    phase: PayloadPhase,
    steps: list[dict[str, Any]],
    reports: list[PhaseReport],
    checks: list[Any],
    notes: list[str],
) -> PhaseReport:
    """The largest prompt step's figures on top; every step and the slopes in details."""
    if not reports:
        return PhaseReport(name="payload", kind="payload", status=Status.ERROR,
                           error="no step ran")  # fmt: skip
    first_answer = phase.answer_tokens[0]
    top = max(range(len(reports)), key=lambda i: (steps[i]["answer_tokens"] == first_answer,
                                                   steps[i]["prompt_bytes"]))  # fmt: skip
    report = reports[top].without_details(name="payload", checks=list(checks),
                                          notes=list(notes))  # fmt: skip
    prompt_steps = [s for s in steps if s["answer_tokens"] == first_answer]
    slope = slope_per_100kb([(s["prompt_bytes"], s["p50"]) for s in prompt_steps])
    floor = slope_per_100kb([(s["prompt_bytes"], s.get("floor_p50")) for s in prompt_steps])
    report.params = {**asdict(phase), "steps": len(steps)}
    report.details = PayloadDetails(steps=steps, slope_s_per_100kb=slope,
                                    floor_slope_s_per_100kb=floor,
                                    net_slope_s_per_100kb=None if slope is None or floor is None
                                    else slope - floor)  # fmt: skip
    return settle(report)


PAYLOAD_OVERHEAD = MetricSpec("soak_payload_overhead_seconds", "gauge",
    ("target", "prompt_bytes", "answer_tokens", "statistic"),
    "Per-request overhead (p50, p99) at each step of the last payload phase; the step's sizes "
    "come from phases.payload (bounded: at most 31 steps).",
)
PAYLOAD_CPU = MetricSpec("soak_payload_gateway_cpu_seconds_per_request", "gauge",
    ("target", "prompt_bytes", "answer_tokens"),
    "Gateway process CPU seconds per request at each step of the last payload phase.",
)
PAYLOAD_SLOPE = MetricSpec("soak_payload_overhead_slope_seconds_per_100kb", "gauge",
    ("target", "basis"),
    "Least-squares slope of the p50 overhead over the prompt sizes of the last payload phase, "
    "seconds per 100 KB: basis gateway, floor (straight to the mock: the tester's own) or net.",
)
MODEL_OVERHEAD = MetricSpec("soak_model_overhead_seconds", "gauge",
    ("target", "model", "statistic"),
    "Per-request overhead (p50, p99) per workload model at the last payload phase's largest "
    "prompt step; model names from workload.models (at most 32), never from the wire.",
)


def record_payload(report: PhaseReport, metrics: Any, target: str) -> None:
    """Per step overhead p50/p99 and CPU per request, the slopes, and the per-model overhead
    at the largest prompt step; labels from phases.payload and workload.models only."""
    if report.status in (Status.ERROR, Status.SKIPPED):
        return
    d = report.record(PayloadDetails)
    for step in d.steps:
        sizes = (str(int(step["prompt_bytes"])), str(int(step["answer_tokens"])))
        for stat in ("p50", "p99"):
            if step.get(stat) is not None:
                metrics.child(PAYLOAD_OVERHEAD, target, *sizes, stat).set(step[stat])
        if step.get("cpu_s_per_request") is not None:
            metrics.child(PAYLOAD_CPU, target, *sizes).set(step["cpu_s_per_request"])
    for basis, slope in d.slopes().items():
        if slope is not None:
            metrics.child(PAYLOAD_SLOPE, target, basis).set(slope)
    top = max(d.steps, key=lambda s: s.get("prompt_bytes", 0), default={})
    for model, row in (top.get("breakdown") or {}).get("model", {}).items():
        for stat in ("p50", "p99"):
            if row.get(f"overhead_{stat}") is not None:
                value = row[f"overhead_{stat}"]
                metrics.child(MODEL_OVERHEAD, target, model_label(model), stat).set(value)


PHASE = PhaseSpec(
    name="payload",
    order=95,
    run=run_payload,
    settings=parse_payload,
    on_demand=True,  # minutes of large bodies: run when named
    in_error_budget=False,  # its sizes are chosen to find limits, not the daily traffic's
    record=record_payload,
    markdown=report_hook("soak.reports.payload_md", "payload_section"),
    details=PayloadDetails,
    metrics=(PAYLOAD_OVERHEAD, PAYLOAD_CPU, PAYLOAD_SLOPE, MODEL_OVERHEAD),
    figure=report_hook("soak.reports.phase_plots", "payload_figure"),
)
