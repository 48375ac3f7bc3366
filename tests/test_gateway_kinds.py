"""Gateway kinds: what soak writes, which headers it sends, how it reads a self-report."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from types import MappingProxyType

import aiohttp
import pytest
from aiohttp import web

import soak.gateway
import soak.gateway.kinds
from soak.client import ChatClient, make_session
from soak.config import ConfigError
from soak.config.fields import Secret
from soak.config.schema import ManagedConfig
from soak.gateway import registry
from soak.gateway.kind import GatewayKind
from soak.gateway.kinds.litellm import LiteLLMKind, provider_of
from soak.gateway.kinds.portkey import PortkeyKind
from soak.gateway.managed import build_managed
from soak.gateway.process import GatewayStartError
from soak.gateway.registry import get_kind
from soak.gateway.said import GatewaySaid
from soak.gateway.selfreport import CLOSED, HALF_OPEN, HistogramSnapshot
from soak.phases import load_config
from soak.stack import start_stack

MOCK = "http://127.0.0.1:9999"

# Trimmed from a real litellm 1.106.2 /metrics/ page after a faulted primary had recovered:
# note the stale `2` LiteLLM leaves under the group name next to the fresh `0`.
LITELLM_METRICS = """\
# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 3.68672768e+08
# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12.04
# HELP litellm_overhead_latency_metric Latency overhead (milliseconds) added by LiteLLM processing
# TYPE litellm_overhead_latency_metric histogram
litellm_overhead_latency_metric_bucket{api_base="/p/primary/v1",model_id="a",le="0.005"} 0.0
litellm_overhead_latency_metric_bucket{api_base="/p/primary/v1",model_id="a",le="0.025"} 6.0
litellm_overhead_latency_metric_bucket{api_base="/p/primary/v1",model_id="a",le="0.05"} 10.0
litellm_overhead_latency_metric_bucket{api_base="/p/primary/v1",model_id="a",le="+Inf"} 10.0
litellm_overhead_latency_metric_count{api_base="/p/primary/v1",model_id="a"} 10.0
litellm_overhead_latency_metric_sum{api_base="/p/primary/v1",model_id="a"} 0.2
litellm_overhead_latency_metric_bucket{api_base="/p/fallback/v1",model_id="b",le="0.005"} 0.0
litellm_overhead_latency_metric_bucket{api_base="/p/fallback/v1",model_id="b",le="0.025"} 4.0
litellm_overhead_latency_metric_bucket{api_base="/p/fallback/v1",model_id="b",le="0.05"} 10.0
litellm_overhead_latency_metric_bucket{api_base="/p/fallback/v1",model_id="b",le="+Inf"} 10.0
litellm_overhead_latency_metric_count{api_base="/p/fallback/v1",model_id="b"} 10.0
litellm_overhead_latency_metric_sum{api_base="/p/fallback/v1",model_id="b"} 0.4
# HELP litellm_deployment_state LLM Deployment Analytics - The state of the deployment
# TYPE litellm_deployment_state gauge
litellm_deployment_state{api_base="/p/primary/v1",litellm_model_name="mock-model",model_id="a"} 0.0
litellm_deployment_state{api_base="/p/primary/v1",litellm_model_name="soak-p",model_id="a"} 2.0
litellm_deployment_state{api_base="/p/fallback/v1",litellm_model_name="mock-model",model_id="b"} 1.0
# HELP litellm_deployment_cooled_down_total Number of times a deployment has been cooled down
# TYPE litellm_deployment_cooled_down_total counter
litellm_deployment_cooled_down_total{api_base="/p/primary/v1",exception_status="500"} 3.0
litellm_deployment_cooled_down_total{api_base="/p/primary/v1",exception_status="429"} 1.0
# HELP litellm_deployment_successful_fallbacks_total Successful fallbacks
# TYPE litellm_deployment_successful_fallbacks_total counter
litellm_deployment_successful_fallbacks_total{exception_status="500"} 4.0
litellm_deployment_successful_fallbacks_total{exception_status="None"} 26.0
"""


def test_litellm_prepare_writes_routes_key_and_command(tmp_path: Path) -> None:
    kind = LiteLLMKind(cooldown_time=7, request_timeout=12)
    spec = kind.prepare(
        tmp_path, mock_url=MOCK + "/", primary="bedrock", fallback="openai", port=4321, model="m1"
    )
    cfg = json.loads(spec.files["config"].read_text())
    deployments = {d["model_name"]: d for d in cfg["model_list"]}
    assert set(deployments) == {"m1", "soak-fallback"}
    assert deployments["m1"]["litellm_params"] == {
        "model": "openai/m1",
        "api_base": f"{MOCK}/p/bedrock/v1",
        "api_key": "mock",
    }
    assert deployments["soak-fallback"]["litellm_params"]["api_base"] == f"{MOCK}/p/openai/v1"
    assert cfg["litellm_settings"]["fallbacks"] == [{"m1": ["soak-fallback"]}]
    assert cfg["litellm_settings"]["callbacks"] == ["prometheus"]
    assert cfg["litellm_settings"]["num_retries"] == 0
    assert cfg["litellm_settings"]["request_timeout"] == 12
    assert cfg["router_settings"] == {"num_retries": 0, "allowed_fails": 1, "cooldown_time": 7}
    assert re.fullmatch(r"sk-soak-[0-9a-f]{32}", spec.api_key or "")
    assert spec.env["LITELLM_MASTER_KEY"] == spec.api_key
    assert spec.env["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
    assert "PROMETHEUS_MULTIPROC_DIR" not in spec.env
    assert "127.0.0.1" in spec.env["NO_PROXY"].split(",")
    assert spec.secrets == (spec.api_key,)
    assert spec.api_key not in spec.files["config"].read_text()
    assert spec.url == "http://127.0.0.1:4321"
    assert spec.ready_url == "http://127.0.0.1:4321/health/liveliness"
    assert spec.argv[1:] == (
        "--config", str(spec.files["config"]), "--host", "127.0.0.1",
        "--port", "4321", "--num_workers", "1",
    )  # fmt: skip


def test_litellm_given_key_is_used_and_default_allowed_fails_is_refused(tmp_path: Path) -> None:
    spec = LiteLLMKind().prepare(
        tmp_path, mock_url=MOCK, primary="p", fallback="f", port=1, model="m", api_key="sk-given"
    )
    assert spec.api_key == "sk-given"
    with pytest.raises(ValueError, match=r"allowed_fails: 3 would disable cooldown"):
        LiteLLMKind(allowed_fails=3)


def test_auth_and_routing_headers_per_kind() -> None:
    route = {"mock_url": MOCK, "primary": "primary", "fallback": "fallback"}
    assert get_kind("openai").request_headers("k1", **route) == {"Authorization": "Bearer k1"}
    assert get_kind("openai").request_headers(None, **route) == {}
    assert get_kind("litellm").request_headers("k2", **route) == {"Authorization": "Bearer k2"}
    portkey = get_kind("portkey").request_headers(None, **route)
    assert set(portkey) == {"x-portkey-config"}
    assert json.loads(portkey["x-portkey-config"]) == {
        "strategy": {"mode": "fallback"},
        "targets": [
            {"provider": "openai", "api_key": "mock", "custom_host": f"{MOCK}/p/primary/v1"},
            {"provider": "openai", "api_key": "mock", "custom_host": f"{MOCK}/p/fallback/v1"},
        ],
    }
    with pytest.raises(ValueError, match=r"gateway.kind: unknown kind 'kong'"):
        get_kind("kong")


def test_served_by_from_response_headers() -> None:
    names = {"primary": "primary", "fallback": "fallback"}
    portkey = PortkeyKind()
    hdrs = {"X-Portkey-Last-Used-Option-Index": "config.targets[1]"}
    assert portkey.served_by(hdrs, **names) == "fallback"
    assert portkey.served_by(
        {"x-portkey-last-used-option-index": "config.targets[0]"}, **names
    ) == ("primary")
    assert (
        portkey.served_by({"x-portkey-last-used-option-index": "config.targets[5]"}, **names)
        is None
    )
    assert portkey.served_by({}, **names) is None
    litellm = LiteLLMKind()
    hdrs = {"x-litellm-model-api-base": "http://127.0.0.1:5/p/fallback/v1"}
    assert litellm.served_by(hdrs, **names) == "fallback"
    assert provider_of("http://h/v1") is None


def test_portkey_prepare_needs_the_package(tmp_path: Path) -> None:
    with pytest.raises(GatewayStartError, match=r"Portkey gateway is not installed"):
        PortkeyKind().prepare(tmp_path, mock_url=MOCK, primary="p", fallback="f", port=1, model="m")
    pkg = tmp_path / "pk"
    script = PortkeyKind().server_script(pkg)
    script.parent.mkdir(parents=True)
    script.write_text("")
    spec = PortkeyKind(package_dir=pkg).prepare(
        tmp_path, mock_url=MOCK, primary="p", fallback="f", port=4242, model="m"
    )
    assert spec.argv == ("node", str(script), "--port=4242", "--headless")
    assert spec.ready_url == "http://127.0.0.1:4242/"


def test_litellm_self_report_parsing() -> None:
    report = LiteLLMKind().parse_self_report(LITELLM_METRICS)
    assert report.source == "litellm /metrics/"
    assert report.overhead is not None
    assert report.overhead.count == 20
    assert report.overhead.mean == pytest.approx(0.03)
    assert report.overhead.buckets == ((0.005, 0), (0.025, 10), (0.05, 20), (float("inf"), 20))
    assert report.overhead.quantile(0.5) == pytest.approx(0.025)
    assert report.overhead.quantile(0.75) == pytest.approx(0.0375)
    assert report.breaker == {"primary": CLOSED, "fallback": HALF_OPEN}
    assert report.cooldowns == {"primary": 4.0}
    assert report.fallbacks == 30.0
    assert report.rss_bytes == 368672768.0
    assert report.cpu_seconds == 12.04
    assert report.upstream_latency is None


def test_histogram_snapshot_math() -> None:
    inf = float("inf")
    before = HistogramSnapshot(4, 0.4, ((0.1, 2), (1.0, 4), (inf, 4)))
    after = HistogramSnapshot(10, 2.0, ((0.1, 2), (1.0, 8), (inf, 10)))
    phase = after.minus(before)
    assert phase == HistogramSnapshot(6, pytest.approx(1.6), ((0.1, 0), (1.0, 4), (inf, 6)))
    assert phase.quantile(0.5) == pytest.approx(0.1 + 0.9 * 3 / 4)
    assert phase.quantile(0.99) == 1.0  # in +Inf: the last finite bound
    assert after.minus(HistogramSnapshot(50, 9.0, ())) is after  # counter reset
    empty = HistogramSnapshot(0, 0.0, ())
    assert empty.mean is None and empty.quantile(0.5) is None


async def _serve(text: str, status: int = 200) -> tuple[web.AppRunner, str, list[dict[str, str]]]:
    seen: list[dict[str, str]] = []

    async def metrics(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.Response(text=text, status=status)

    app = web.Application()
    app.router.add_get("/metrics/", metrics)
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}", seen


async def test_self_report_scrapes_over_http_with_auth() -> None:
    runner, url, seen = await _serve(LITELLM_METRICS)
    try:
        async with aiohttp.ClientSession() as session:
            report = await LiteLLMKind().self_report(session, url, "sk-x")
            generic = await GatewayKind().self_report(session, url, None)
    finally:
        await runner.cleanup()
    assert report is not None and report.breaker["primary"] == CLOSED
    assert seen[0]["Authorization"] == "Bearer sk-x"
    assert generic is not None and generic.rss_bytes == 368672768.0 and generic.overhead is None


async def test_self_report_is_none_when_the_gateway_has_none() -> None:
    runner, url, _ = await _serve("not found", status=404)
    garbage, gurl, _ = await _serve("this is {not prometheus")
    try:
        async with aiohttp.ClientSession() as session:
            assert await LiteLLMKind().self_report(session, url, None) is None
            assert await LiteLLMKind().self_report(session, gurl, None) is None
            assert await PortkeyKind().self_report(session, url, None) is None
            closed = "http://127.0.0.1:1"
            assert await GatewayKind().self_report(session, closed, None) is None
    finally:
        await runner.cleanup()
        await garbage.cleanup()


def _managed(**kw) -> ManagedConfig:
    base = dict(
        command=(),
        ready_url=None,
        ready_log=None,
        ready_timeout=30.0,
        restart_between_phases=False,
        env=MappingProxyType({}),
    )
    return ManagedConfig(**{**base, **kw})


async def test_build_managed_fills_placeholders_and_collects_secrets(tmp_path: Path) -> None:
    managed = _managed(
        command=("my-litellm", "--config", "{config}", "--port={port}", "--up={mock_url}"),
        ready_url="/ready",
        env=MappingProxyType({"EXTRA_TOKEN": Secret("tok-123456")}),
    )
    gw = await build_managed(
        LiteLLMKind(), managed, workdir=tmp_path, mock_url=MOCK + "/",
        primary="primary", fallback="fallback", model="soak-primary", port=5555,
    )  # fmt: skip
    proc = gw.process
    assert proc.argv == [
        "my-litellm", "--config", str(tmp_path / "litellm-config.yaml"), "--port=5555",
        f"--up={MOCK}",
    ]  # fmt: skip
    assert proc.ready_url == "http://127.0.0.1:5555/ready"
    assert proc.env["EXTRA_TOKEN"] == "tok-123456"
    assert gw.api_key and gw.api_key in proc.secrets and "tok-123456" in proc.secrets
    assert proc.env["LITELLM_MASTER_KEY"] == gw.api_key
    assert proc.ready_timeout == 30.0


async def test_build_managed_generic_needs_a_command(tmp_path: Path) -> None:
    route = dict(workdir=tmp_path, mock_url=MOCK, primary="p", fallback="f", model="m")
    with pytest.raises(GatewayStartError, match=r"kind 'openai' has no built-in managed setup"):
        await build_managed(GatewayKind(), None, **route)
    with pytest.raises(GatewayStartError, match=r"uses \{config\} but this gateway kind"):
        await build_managed(GatewayKind(), _managed(command=("gw", "{config}")), **route)
    gw = await build_managed(
        GatewayKind(), _managed(command=("gw", "--port", "{port}"), ready_log="listening"), **route
    )
    assert gw.process.ready_log is not None and gw.process.ready_url is None
    assert gw.url == f"http://127.0.0.1:{gw.process.argv[2]}"


async def test_portkey_install_without_npm_is_one_clear_line(tmp_path: Path) -> None:
    kind = PortkeyKind(npm="/nonexistent/npm")
    with pytest.raises(
        GatewayStartError,
        match=r"^cannot install the Portkey gateway: '/nonexistent/npm' not found$",
    ):
        await kind.install(tmp_path)
    script = kind.server_script(tmp_path / "portkey-gateway-1.15.2")
    script.parent.mkdir(parents=True)
    script.write_text("")
    await kind.install(tmp_path)  # already there: no npm needed
    assert kind.package_dir == tmp_path / "portkey-gateway-1.15.2"


TINY_KIND = '''
from soak.gateway.kind import GatewayKind


class TinyKind(GatewayKind):
    name = "tinygw"
    title = "Tiny"
    self_headers = ("x-tiny-served-by",)

    def served_by(self, headers, *, primary, fallback):
        return {k.lower(): v for k, v in headers.items()}.get("x-tiny-served-by")


KIND = TinyKind
'''


@pytest.fixture
def tiny_kind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A kind that exists only as one module in a directory the registry scans."""
    extra = tmp_path / "more-kinds"
    extra.mkdir()
    (extra / "tinygw.py").write_text(TINY_KIND)
    monkeypatch.setattr(soak.gateway.kinds, "__path__", [*soak.gateway.kinds.__path__, str(extra)])
    registry.rescan()
    yield
    monkeypatch.undo()
    sys.modules.pop("soak.gateway.kinds.tinygw", None)
    registry.rescan()


async def _answer_with(header: str, value: str) -> tuple[web.AppRunner, str]:
    """A chat endpoint that answers OK with the mock's marker and one gateway header."""

    async def chat(request: web.Request) -> web.Response:
        body = {"choices": [{"message": {"content": "hi [mock:fallback:10]"},
                             "finish_reason": "stop"}]}  # fmt: skip
        return web.json_response(body, headers={header: value, "x-other": "dropped"})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


@pytest.mark.usefixtures("tiny_kind")
async def test_a_new_kind_is_one_module(tmp_path: Path) -> None:
    assert registry.kind_names() == ("openai", "litellm", "portkey", "tinygw")
    runner, url = await _answer_with("x-tiny-served-by", "fallback")
    path = tmp_path / "tiny.yaml"
    path.write_text(f"version: 1\ngateway: {{kind: tinygw, url: '{url}'}}\nmock: {{url: '{url}'}}")
    try:
        config = load_config(path, env={})
        assert config.gateway.kind == "tinygw"
        async with AsyncExitStack() as exits:
            stack = await start_stack(config, tmp_path / "work", exits)
        assert type(stack.kind).__name__ == "TinyKind" and stack.gateway is None
        async with make_session(4, 10.0) as session:
            client = ChatClient(session, f"{url}/v1/chat/completions", model="m", run_id="t")
            result = await client.send(1, 0.0)
    finally:
        await runner.cleanup()
    assert result.ok and result.gateway_headers == (("x-tiny-served-by", "fallback"),)
    said = GatewaySaid(stack.kind, "primary", "fallback")
    said.add(result, "overhead")
    assert said.phases["overhead"].pairs == {("fallback", "fallback"): 1}
    path.write_text("version: 1\ngateway: {kind: tinygw, url: 'http://x:1', primary_api: bedrock}")
    with pytest.raises(ConfigError, match=r"gateway.primary_api: only for kind litellm \("):
        load_config(path, env={})


def test_register_adds_a_kind_until_unregistered() -> None:
    class Routed(GatewayKind):
        name = "routed"
        title = "Routed"
        self_headers = ("x-routed-by",)
        primary_apis = ("openai", "bedrock")

    assert registry.register(Routed) is Routed
    try:
        assert registry.kind_names()[-1] == "routed"
        assert registry.self_headers()[-1] == "x-routed-by"
        assert registry.primary_api_refusal("openai", "bedrock") == (
            "only for kind litellm or routed",
            "soak writes the routes of LiteLLM and Routed only",
        )
        assert registry.primary_api_refusal("routed", "bedrock") is None
        with pytest.raises(ValueError, match=r"'litellm' is already soak.gateway.kinds.litellm"):
            registry.register(type("Clash", (GatewayKind,), {"name": "litellm"}))
    finally:
        registry.unregister("routed")
    assert "routed" not in registry.kind_names()
    assert "x-routed-by" not in registry.self_headers()


def test_kind_modules_import_the_base_only_and_nothing_loops() -> None:
    """Each kind module imports no other kind and not the registry; soak.gateway has no import
    cycle; importing soak.config pulls in no phase code."""
    root = Path(soak.gateway.__file__).parent
    graph: dict[str, set[str]] = {}
    for file in root.rglob("*.py"):
        rel = file.relative_to(root).with_suffix("")
        module = ".".join(("soak", "gateway", *rel.parts)).removesuffix(".__init__")
        found = set()
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
        graph[module] = {m for m in found if m.startswith("soak.gateway")}
    kinds = [m for m in graph if m.startswith("soak.gateway.kinds.")]
    assert {"soak.gateway.kinds.openai", "soak.gateway.kinds.litellm"} <= set(kinds)
    for module in kinds:
        assert not graph[module] & {*kinds, "soak.gateway.registry", "soak.gateway.kinds"}, module
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, f"import cycle: {' -> '.join((*path, module))}"
        if module not in done:
            for dep in graph.get(module, ()):
                visit(dep, (*path, module))
            done.add(module)

    for module in graph:
        visit(module, ())
    code = "import sys, soak.config; print(sorted(m for m in sys.modules if 'phases' in m))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
