"""The wheel installs `soak` and `soak.mock`, never a top-level `mock` (unittest.mock's name)."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


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


def test_wheel_maps_mock_under_soak_and_installs_cleanly(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path / "dist")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {n.split("/", 1)[0] for n in names if "/" in n and ".dist-info" not in n}
    assert top_level == {"soak"}, top_level
    assert "soak/mock/__init__.py" in names
    # every package in the source tree ships (a subpackage missing from pyproject would not)
    for init in [*ROOT.glob("soak/**/__init__.py"), *ROOT.glob("mock/**/__init__.py")]:
        rel = init.relative_to(ROOT).as_posix()
        shipped = rel if rel.startswith("soak/") else "soak/" + rel
        assert shipped in names, f"{rel} is not in the wheel: add it to [tool.setuptools] packages"
    assert "soak/config/profiles/embedded.yaml" in names
    assert "soak/config/profiles/quick.yaml" in names

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
