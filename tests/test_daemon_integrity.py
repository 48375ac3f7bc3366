"""The daemon's own output, scraped over HTTP: a gateway that answers from a cache without the
mock is counted `untraced` on /metrics (never `ok`), and a target renamed by `/-/reload` leaves
none of its series behind. A real daemon with the real mock, in process."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import yaml
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from soak.mock.app import MockConfig, MockServer
from soak.mock.profile import parse_profile

from soak.daemon import ConfigSource, Daemon


def write_config(path: Path, *, name: str, gateway_url: str, mock_url: str) -> Path:
    path.write_text(yaml.safe_dump({
        "version": 1,
        "gateway": {"name": name, "url": gateway_url, "model": "soak-model"},
        "mock": {"url": mock_url},
        "phases": {"overhead": {"rate": 20, "duration": "250ms", "latency": "5ms"}},
        "schedule": [{"name": "tiny", "interval": "1h", "phases": ["overhead"],
                      "run_on_start": True}],
    }))  # fmt: skip
    return path


async def forging_gateway() -> tuple[web.AppRunner, str]:
    """Answers every chat request itself with the mock's marker in it; never calls the mock."""

    async def answer(_request: web.Request) -> web.Response:
        text = "Fine. [mock:primary:5000]"
        return web.json_response({"choices": [{"message": {"content": text}}],
                                  "usage": {"completion_tokens": 2}})  # fmt: skip

    app = web.Application()
    app.router.add_post("/v1/chat/completions", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def scrape(session: aiohttp.ClientSession, base: str) -> list[tuple[str, dict, float]]:
    async with session.get(f"{base}/metrics") as resp:
        text = await resp.text()
    return [(s.name, s.labels, s.value) for f in text_string_to_metric_families(text)
            for s in f.samples]  # fmt: skip


async def test_untraced_answers_on_metrics_and_a_renamed_target_leaves_no_series(
    tmp_path: Path,
) -> None:
    profile = parse_profile({}, "providers.primary")
    providers = {"primary": profile, "fallback": profile}
    gateway, gateway_url = await forging_gateway()
    listening: asyncio.Future[tuple[str, int]] = asyncio.get_running_loop().create_future()
    try:
        async with MockServer(MockConfig(providers=providers)) as mock, aiohttp.ClientSession(
        ) as session:  # fmt: skip
            path = write_config(tmp_path / "soak.yaml", name="forger", gateway_url=gateway_url,
                                mock_url=mock.url)  # fmt: skip
            source = ConfigSource(path)
            daemon = Daemon(source, source.load(), listen="127.0.0.1:0", data_dir=tmp_path / "d")
            task = asyncio.create_task(
                daemon.run(on_listening=lambda h, p: listening.set_result((h, p)))
            )
            host, port = await asyncio.wait_for(listening, 10)
            base = f"http://{host}:{port}"
            done = {"plan": "tiny", "status": "failed"}
            for _ in range(400):
                if daemon.registry.get_sample_value("soak_plan_runs_total", done):
                    break
                await asyncio.sleep(0.025)
            samples = await scrape(session, base)
            requests = {
                labels["outcome"]: value
                for name, labels, value in samples
                if name == "soak_requests_total" and labels.get("target") == "forger"
            }
            assert requests["untraced"] == 5 and requests["ok"] == 0, requests
            assert requests["forged"] == 0 and requests["http_3xx"] == 0  # exist at 0
            before = [s for s in samples if s[1].get("target") == "forger"]
            assert len(before) > 100  # the few hundred series a target has

            write_config(path, name="renamed", gateway_url=gateway_url, mock_url=mock.url)
            async with session.post(f"{base}/-/reload") as resp:
                assert resp.status == 200, await resp.text()
            after = await scrape(session, base)
            assert [s for s in after if s[1].get("target") == "forger"] == []
            daemon.request_stop()
            assert await asyncio.wait_for(task, 30) == 0
    finally:
        await gateway.cleanup()
