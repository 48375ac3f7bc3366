"""The wheel installs `soak`, `soak.mock` and `soak.dashboards`, never a top-level `mock`
(unittest.mock's name); installed from it, `soak rules` and `soak dashboard` generate a user's
artefacts from their own config, and the dashboard without its extra names the extra."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest
import yaml

from soak.promql import le_matcher

ROOT = Path(__file__).resolve().parent.parent
CUSTOM = ROOT / "tests" / "data" / "configs" / "custom-slo-schedule.yaml"


def _build_wheel(out: Path) -> Path:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("llm_soak-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One wheel for the module's tests (a build takes seconds)."""
    return _build_wheel(tmp_path_factory.mktemp("dist"))


def test_wheel_maps_mock_under_soak_and_installs_cleanly(tmp_path: Path, wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {n.split("/", 1)[0] for n in names if "/" in n and ".dist-info" not in n}
    assert top_level == {"soak"}, top_level
    assert "soak/mock/__init__.py" in names
    # every package in the source tree ships (a subpackage missing from pyproject would not)
    folders = ("soak", "mock", "dashboards")
    for init in (i for folder in folders for i in ROOT.glob(f"{folder}/**/__init__.py")):
        rel = init.relative_to(ROOT).as_posix()
        shipped = rel if rel.startswith("soak/") else "soak/" + rel
        assert shipped in names, f"{rel} is not in the wheel: add it to [tool.setuptools] packages"
    assert "soak/config/profiles/embedded.yaml" in names
    assert "soak/config/profiles/quick.yaml" in names
    assert "soak/dashboards/soak_dashboard.py" in names
    # the generated files are the repository's deploy example, not package data
    assert not [n for n in names if n.startswith("soak/dashboards/") and n.endswith(
        (".json", ".yml", ".yaml"))]  # fmt: skip

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True)
    # Dependencies come from the running interpreter's site-packages (no network needed);
    # a path added by a .pth file is not itself a site dir, so no editable finder leaks in.
    site = subprocess.run(
        [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(site, "zz_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    work = tmp_path / "elsewhere"
    work.mkdir()
    probe = (
        "import importlib.util, soak.mock, soak;"
        "print(soak.__file__); print(soak.mock.__file__);"
        "print(importlib.util.find_spec('mock'))"
    )
    out = subprocess.run([py, "-c", probe], cwd=work, check=True, capture_output=True, text=True)
    soak_file, mock_file, mock_spec = out.stdout.strip().splitlines()
    assert soak_file.startswith(site)
    assert mock_file == str(Path(site, "soak", "mock", "__init__.py"))
    assert mock_spec == "None"

    helped = subprocess.run(
        [env_dir / "bin" / "soak", "mock", "--help"], cwd=work, capture_output=True, text=True
    )
    assert helped.returncode == 0, helped.stderr
    assert "--port" in helped.stdout


def _run(*argv: str | Path, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def _promtool_check(path: Path) -> None:
    checked = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout


def test_installed_wheel_generates_a_users_rules_and_dashboard(tmp_path: Path, wheel: Path) -> None:
    """As a user would: pip install the wheel (dependencies from PyPI) into a fresh venv, then
    generate from their own config (custom schedule and SLOs; secret unset, 3 shards)."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / "bin"
    unset = {"PYTHONPATH", "VIRTUAL_ENV", "SOAK_TEST_NEVER_SET_GATEWAY_KEY"}
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    work = tmp_path / "elsewhere"
    work.mkdir()
    config = work / "soak.yaml"
    shutil.copy(CUSTOM, config)
    pip = [bin_dir / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    installed = _run(*pip, wheel, cwd=work, env=env)
    assert installed.returncode == 0, installed.stderr

    done = _run(bin_dir / "soak", "rules", "--config", config, "--out", "rules.yml",
                cwd=work, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = (work / "rules.yml").read_text()
    assert text.startswith("# Generated by soak rules --format rules from ")
    groups = yaml.safe_load(text)["groups"]
    _promtool_check(work / "rules.yml")  # the file exactly as soak wrote it
    constants = {r["labels"]["phase"]: r["expr"] for g in groups for r in g["rules"]
                 if r.get("record") == "phase:soak_schedule_interval_seconds:config"}  # fmt: skip
    assert constants == {
        "calibration": "vector(420)", "overhead": "vector(420)", "stress": "vector(3600)",
    }  # fmt: skip
    overhead = [r["expr"] for g in groups for r in g["rules"]
                if r.get("alert") == "SoakGatewayOverheadHigh"]  # fmt: skip
    assert any(le_matcher(0.03) in e for e in overhead), overhead
    assert not any(le_matcher(0.02) in e for e in overhead), overhead

    done = _run(bin_dir / "soak", "rules", "--config", config, "--format", "prometheusrule",
                "--name", "team-soak", "--namespace", "monitoring", "--label", "release=prom",
                "--label", "team=sre", cwd=work, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    rule = yaml.safe_load(done.stdout)
    assert rule["kind"] == "PrometheusRule"
    assert {k: rule["metadata"][k] for k in ("name", "namespace")} == {
        "name": "team-soak", "namespace": "monitoring",
    }  # fmt: skip
    assert {"release": "prom", "team": "sre"}.items() <= rule["metadata"]["labels"].items()
    assert rule["spec"]["groups"] == groups
    (work / "spec.yml").write_text(yaml.safe_dump(rule["spec"]))  # promtool reads the groups
    _promtool_check(work / "spec.yml")

    missing = _run(bin_dir / "soak", "dashboard", "--config", config, cwd=work, env=env)
    assert (missing.returncode, missing.stdout) == (2, ""), missing.stderr
    assert missing.stderr == (
        "soak: the dashboard needs the 'dashboards' extra (grafanalib is not installed): "
        "pip install 'llm-soak[dashboards]'\n"
    )

    installed = _run(*pip, f"{wheel}[dashboards]", cwd=work, env=env)
    assert installed.returncode == 0, installed.stderr
    done = _run(bin_dir / "soak", "dashboard", "--config", config, cwd=work, env=env)
    assert done.returncode == 0, done.stderr
    dashboard = json.loads(done.stdout)
    steps = {p["title"]: [s["value"] for s in p["fieldConfig"]["defaults"]["thresholds"]["steps"]]
             for p in dashboard["panels"] if "fieldConfig" in p}  # fmt: skip
    assert steps["Per-request overhead percentiles vs thresholds"] == [
        None, 0.005, 0.01, 0.03, 0.1,
    ]  # fmt: skip
    assert steps["Request latency from intended start (all replicas)"] == [None, 3.0, 4.0, 8.0]
    where = _run(bin_dir / "python", "-c", "import soak.dashboards as d; print(d.__file__)",
                 cwd=work, env=env)  # fmt: skip
    assert where.stdout.startswith(str(env_dir)), where.stdout
