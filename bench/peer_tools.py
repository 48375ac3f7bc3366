"""How bench/bench_peers.py runs each peer tool and reads its own report.

Every runner takes the same arguments (environment, rate, seconds, stream) and returns what the
tool measured in one common shape: requests completed and failed, latency p50 / p99 (ms), TTFT
and inter-token p50 / p99 for streams, and CPU-ms per completed request (the child's CPU time,
its own children included, from `getrusage(RUSAGE_CHILDREN)` around it).
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cpu_bench import GENERATOR_CORE, children_cpu

CHAT = "/p/primary/v1/chat/completions"
PROMPT = "Hello, how are you?"
BODY = json.dumps({"model": "m", "max_tokens": 16,
                   "messages": [{"role": "user", "content": PROMPT}]})  # fmt: skip


@dataclass
class Env:
    tmp: Path
    venv: Path
    url: str

    def bin(self, name: str) -> Path:
        return self.venv / "bin" / name

    @property
    def hf_home(self) -> Path:
        return self.tmp / "hf"

    @property
    def tokenizer(self) -> str:
        """A tiny word-level tokenizer made here with `tokenizers` (nothing fetched), laid out
        as a cached hub model `soak/tiny` under a private HF_HOME, so tools that only resolve
        hub names offline (AIPerf) load it as well as those taking a path."""
        snap = self.hf_home / "hub" / "models--soak--tiny" / "snapshots" / ("0" * 40)
        if not (snap / "tokenizer.json").exists():
            snap.mkdir(parents=True, exist_ok=True)
            (snap.parent.parent / "refs").mkdir(exist_ok=True)
            (snap.parent.parent / "refs" / "main").write_text("0" * 40)
            script = _TOKENIZER.format(path=str(snap))
            subprocess.run([str(self.bin("python")), "-c", script], check=True, timeout=120)
        return "soak/tiny"

    @property
    def offline(self) -> dict[str, str]:
        """Environment for the LLM benchmarkers: the private hub cache, never the network."""
        _ = self.tokenizer
        return {**os.environ, "HF_HOME": str(self.hf_home), "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}  # fmt: skip


_TOKENIZER = """
from tokenizers import Tokenizer, models, pre_tokenizers, decoders
import json, pathlib
words = ["[UNK]", "[BOS]", "[EOS]", "[PAD]"] + "hello how are you lorem ipsum dolor sit amet \
consectetur adipiscing elit sed the a of to and in is it that for on with as".split()
words += [f"w{{i}}" for i in range(200)]
tok = Tokenizer(models.WordLevel({{w: i for i, w in enumerate(words)}}, unk_token="[UNK]"))
tok.pre_tokenizer = pre_tokenizers.Whitespace()
tok.decoder = decoders.WordPiece(prefix="##")
path = pathlib.Path({path!r})
tok.save(str(path / "tokenizer.json"))
(path / "tokenizer_config.json").write_text(json.dumps({{
    "tokenizer_class": "PreTrainedTokenizerFast", "unk_token": "[UNK]", "bos_token": "[BOS]",
    "eos_token": "[EOS]", "pad_token": "[PAD]", "model_max_length": 4096}}))
(path / "config.json").write_text(json.dumps({{"model_type": "gpt2", "vocab_size": len(words),
    "bos_token_id": 1, "eos_token_id": 2}}))
"""


def run(
    cmd: list[str], timeout: float, **kw: Any
) -> tuple[subprocess.CompletedProcess[str], float]:
    """`cmd` pinned to the generator core: its output and its CPU seconds."""
    cpu0 = children_cpu()
    proc = subprocess.run(["taskset", "-c", str(GENERATOR_CORE), *cmd], capture_output=True,
                          text=True, timeout=timeout, **kw)  # fmt: skip
    return proc, children_cpu() - cpu0


def shaped(completed: int, failed: int, cpu: float, **lat: float | None) -> dict[str, Any]:
    if completed == 0:
        raise RuntimeError("no request completed")
    return {"completed": completed, "failed": failed,
            "cpu_ms_per_request": cpu * 1e3 / completed, **lat}  # fmt: skip


def hey(env: Env, rate: float, duration: float, *, stream: bool = False) -> dict[str, Any]:
    workers = max(10, min(200, round(rate / 10)))
    proc, cpu = run(["hey", "-z", f"{duration:g}s", "-c", str(workers), "-q",
                     f"{rate / workers:g}", "-m", "POST", "-T", "application/json", "-d", BODY,
                     env.url + CHAT], duration + 60)  # fmt: skip
    out = proc.stdout
    ok = sum(int(n) for n in re.findall(r"\[200\]\s+(\d+) responses", out))
    total = sum(int(n) for n in re.findall(r"\[\d+\]\s+(\d+) responses", out))
    _, _, error_part = out.partition("Error distribution:")
    errors = sum(int(n) for n in re.findall(r"\[(\d+)\]", error_part))
    p50, p99 = (re.search(rf"\s{q}%+ in ([\d.]+) secs", out) for q in (50, 99))
    return shaped(ok, total - ok + errors, cpu,
                  latency_p50_ms=float(p50.group(1)) * 1e3 if p50 else None,
                  latency_p99_ms=float(p99.group(1)) * 1e3 if p99 else None)  # fmt: skip


_WRK = """
wrk.method = "POST"
wrk.body   = '{body}'
wrk.headers["Content-Type"] = "application/json"
"""


def _wrk_ms(value: str, unit: str) -> float:
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def wrk(env: Env, rate: float, duration: float, *, stream: bool = False) -> dict[str, Any]:
    """Closed loop: rate x 50 ms connections offer about the rate (wrk has no rate option)."""
    script = env.tmp / "post.lua"
    script.write_text(_WRK.format(body=BODY))
    conns = max(1, math.ceil(rate * 0.05))
    proc, cpu = run(["wrk", "-t1", f"-c{conns}", f"-d{duration:g}s", "--latency", "-s",
                     str(script), env.url + CHAT], duration + 60)  # fmt: skip
    out = proc.stdout
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    failed = (int(bad.group(1)) if bad else 0) + (sum(map(int, socket.groups())) if socket else 0)
    lat = {q: re.search(rf"^\s+{q}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M) for q in (50, 99)}
    return shaped(total - (int(bad.group(1)) if bad else 0), failed, cpu,
                  latency_p50_ms=_wrk_ms(*lat[50].groups()) if lat[50] else None,
                  latency_p99_ms=_wrk_ms(*lat[99].groups()) if lat[99] else None)  # fmt: skip


_LOCUST = """
from locust import FastHttpUser, constant_throughput, task

class Chat(FastHttpUser):
    wait_time = constant_throughput({per_user})

    @task
    def chat(self):
        self.client.post("{path}", data={body!r}, headers={{"Content-Type": "application/json"}})
"""


def locust(env: Env, rate: float, duration: float, *, stream: bool = False) -> dict[str, Any]:
    """Locust's fast client, users at a constant throughput each (rate / users)."""
    users = max(10, math.ceil(rate * 0.1))
    script = env.tmp / "locustfile.py"
    script.write_text(_LOCUST.format(per_user=rate / users, path=CHAT, body=BODY))
    prefix = env.tmp / f"locust-{rate:g}"
    _, cpu = run([str(env.bin("locust")), "-f", str(script), "--headless", "-u", str(users),
                     "-r", str(users), "-t", f"{duration:g}s", "--host", env.url, "--csv",
                     str(prefix), "--only-summary", "--loglevel", "WARNING"],
                    duration + 120)  # fmt: skip
    with open(f"{prefix}_stats.csv") as f:
        row = next(r for r in csv.DictReader(f) if r["Name"] == "Aggregated")
    count, failed = int(row["Request Count"]), int(row["Failure Count"])
    return shaped(count - failed, failed, cpu, latency_p50_ms=float(row["50%"]),
                  latency_p99_ms=float(row["99%"]))  # fmt: skip


def _pct(stats: dict[str, Any] | None, key: str, scale: float = 1.0) -> float | None:
    value = (stats or {}).get(key)
    return None if value is None else float(value) * scale


def aiperf(env: Env, rate: float, duration: float, *, stream: bool = False) -> dict[str, Any]:
    """AIPerf at a constant request rate for `duration` seconds (its own report, ms)."""
    out = env.tmp / f"aiperf-{rate:g}-{stream}"
    tokens = 64 if stream else 16
    cmd = [str(env.bin("aiperf")), "profile", "--model", "m", "--url", env.url, "--endpoint",
           CHAT, "--endpoint-type", "chat", "--request-rate", f"{rate:g}",
           "--benchmark-duration", f"{duration:g}", "--tokenizer", env.tokenizer,
           "--output-artifact-dir", str(out), "--prompt-input-tokens-mean", "16",
           "--prompt-output-tokens-mean", str(tokens), "--prompt-output-tokens-stddev", "0",
           "--no-auto-plot", "--ui-type", "none"]  # fmt: skip
    if stream:
        cmd.append("--streaming")
    proc, cpu = run(cmd, duration * 4 + 180, env=env.offline)
    report = out / "profile_export_aiperf.json"
    if not report.exists():
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or ["no report"]
        raise RuntimeError(f"aiperf wrote no report: {tail[0][:160]}")
    data = json.loads(report.read_text())
    count = int((data.get("request_count") or {}).get("avg", 0))
    errors = int((data.get("error_request_count") or {}).get("avg", 0))
    lat, ttft = data.get("request_latency"), data.get("time_to_first_token")
    itl = data.get("inter_token_latency")
    return shaped(count, errors, cpu, latency_p50_ms=_pct(lat, "p50"),
                  latency_p99_ms=_pct(lat, "p99"), ttft_p50_ms=_pct(ttft, "p50"),
                  ttft_p99_ms=_pct(ttft, "p99"), itl_p50_ms=_pct(itl, "p50"),
                  itl_p99_ms=_pct(itl, "p99"))  # fmt: skip


def guidellm(env: Env, rate: float, duration: float, *, stream: bool = False) -> dict[str, Any]:
    """GuideLLM's constant profile for `duration` seconds (its own report)."""
    out = env.tmp / f"guidellm-{rate:g}-{stream}.json"
    tokens = 64 if stream else 16
    backend = (f"kind=openai_http,target={env.url},model=m,validate_backend=false,"
               f"stream={'true' if stream else 'false'}")  # fmt: skip
    cmd = [str(env.bin("guidellm")), "run", "--backend", backend,
           "--profile", f"kind=constant,rate={rate:g}",
           "--constraint", f"kind=max_duration,seconds={duration:g}",
           "--data", f"kind=synthetic_text,prompt_tokens=16,output_tokens={tokens}",
           "--tokenizer", f"kind=huggingface_auto,model={env.tokenizer}",
           "--output", f"kind=json,path={out}", "--disable-console-interactive"]  # fmt: skip
    proc, cpu = run(cmd, duration * 4 + 180, env=env.offline)
    if not out.exists():
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or ["no report"]
        raise RuntimeError(f"guidellm wrote no report: {tail[0][:160]}")
    metrics = json.loads(out.read_text())["benchmarks"][0]["metrics"]
    totals = metrics["request_totals"]

    def pct(name: str, key: str, scale: float = 1.0) -> float | None:
        stats = (metrics.get(name) or {}).get("successful") or {}
        return _pct(stats.get("percentiles"), key, scale)

    return shaped(int(totals["successful"]), int(totals["errored"]), cpu,
                  latency_p50_ms=pct("request_latency", "p50", 1e3),
                  latency_p99_ms=pct("request_latency", "p99", 1e3),
                  ttft_p50_ms=pct("time_to_first_token_ms", "p50") if stream else None,
                  ttft_p99_ms=pct("time_to_first_token_ms", "p99") if stream else None,
                  itl_p50_ms=pct("inter_token_latency_ms", "p50") if stream else None,
                  itl_p99_ms=pct("inter_token_latency_ms", "p99") if stream else None)  # fmt: skip


_INFERENCE_PERF = """
api: {{type: chat, streaming: {stream}}}
data: {{type: mock}}
load:
  type: constant
  stages: [{{rate: {rate}, duration: {duration}}}]
  num_workers: 1
server: {{type: vllm, model_name: m, base_url: "{url}", ignore_eos: true}}
tokenizer: {{pretrained_model_name_or_path: {tokenizer}}}
storage: {{local_storage: {{path: "{out}"}}}}
report: {{request_lifecycle: {{summary: true, per_stage: false}}}}
"""


def inference_perf(env: Env, rate: float, duration: float, *, stream: bool = False
                   ) -> dict[str, Any]:  # fmt: skip
    """inference-perf, one constant-rate stage on /v1/chat/completions: its `mock` data (its
    other generators speak only the completions API, which the mock does not serve); the
    answers are the mock's 16 tokens, or as many as a stream's default asks."""
    out = env.tmp / f"inference-perf-{rate:g}-{stream}"
    config = env.tmp / f"inference-perf-{rate:g}-{stream}.yaml"
    config.write_text(_INFERENCE_PERF.format(
        stream="true" if stream else "false", rate=rate,
        duration=math.ceil(duration), url=env.url, tokenizer=env.tokenizer, out=out))  # fmt: skip
    proc, cpu = run([str(env.bin("inference-perf")), "--config_file", str(config)],
                    duration * 4 + 180, env=env.offline, cwd=env.tmp)  # fmt: skip
    reports = sorted(out.rglob("summary_lifecycle_metrics.json"))
    if not reports:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or ["no report"]
        raise RuntimeError(f"inference-perf wrote no report: {tail[0][:160]}")
    data = json.loads(reports[-1].read_text())
    ok, failures = data.get("successes") or {}, data.get("failures") or {}
    lat = ok.get("latency") or {}
    req, ttft, itl = (lat.get(k) or {} for k in ("request_latency", "time_to_first_token",
                                                  "inter_token_latency"))  # fmt: skip
    return shaped(int(ok.get("count", 0)), int(failures.get("count", 0)), cpu,
                  latency_p50_ms=_pct(req, "median", 1e3), latency_p99_ms=_pct(req, "p99", 1e3),
                  ttft_p50_ms=_pct(ttft, "median", 1e3) if stream else None,
                  ttft_p99_ms=_pct(ttft, "p99", 1e3) if stream else None,
                  itl_p50_ms=_pct(itl, "median", 1e3) if stream else None,
                  itl_p99_ms=_pct(itl, "p99", 1e3) if stream else None)  # fmt: skip


TOOLS: dict[str, Callable[..., dict[str, Any]]] = {
    "hey": hey, "wrk": wrk, "locust": locust, "inference-perf": inference_perf,
    "aiperf": aiperf, "guidellm": guidellm,
}  # fmt: skip
STREAMING = {"aiperf", "guidellm", "inference-perf"}


def missing(tool: str, env: Env) -> str | None:
    """Why `tool` cannot run here, or None."""
    if tool in ("hey", "wrk"):
        return None if shutil.which(tool) else f"{tool} is not installed (Debian package {tool})"
    if tool not in TOOLS:
        return f"unknown tool {tool!r}"
    exe = {"locust": "locust"}.get(tool, tool)
    if not env.bin(exe).exists():
        return f"{exe} is not installed in {env.venv} (pip install {tool})"
    return None
