"""The Grafana dashboards, installed as `soak.dashboards` (this folder, mapped like mock/).

`soak_dashboard` is the only module that imports grafanalib, an optional dependency: install
`llm-soak[dashboards]` for `soak dashboard`. `soak.generate` is the entry point; `build.py` is
the repository's script that writes the committed copies from deploy/base/config.yaml.
"""
