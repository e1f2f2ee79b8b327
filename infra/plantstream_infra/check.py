"""Offline check: run the stack for a preset under Pulumi mocks and apply the policy pack.

    python -m plantstream_infra.check --preset iiot-sa-east-1 [--json]

Needs no cloud account and no Pulumi CLI. Prints every resource (type, name, inputs) and every
policy result; exits 1 when a mandatory policy is violated, 2 on a configuration error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from .policies import CONTROLS, GraphEntry, PolicyResult, evaluate, pack_policies

INFRA_DIR = Path(__file__).resolve().parents[1]
PROJECT = "plantstream"
_REDACT = {"authToken", "secretString", "password", "masterPassword", "privateKey"}


def presets() -> list[str]:
    """Names of the stack config files shipped in ``infra/`` (``Pulumi.<name>.yaml``)."""
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in INFRA_DIR.glob("Pulumi.*.yaml"))


def preset_config(preset: str) -> dict[str, Any]:
    path = INFRA_DIR / f"Pulumi.{preset}.yaml"
    if not path.is_file():
        raise SystemExit(f"unknown preset {preset!r}; known: {', '.join(presets())}")
    data = yaml.safe_load(path.read_text()) or {}
    return dict(data.get("config") or {})


@dataclass(frozen=True)
class CheckReport:
    preset: str
    resources: list[dict[str, Any]]
    outputs: dict[str, Any]
    policies: list[dict[str, Any]]
    results: list[PolicyResult]

    @property
    def violations(self) -> list[PolicyResult]:
        return [r for r in self.results if r.enforcement == "mandatory"]

    @property
    def advisories(self) -> list[PolicyResult]:
        return [r for r in self.results if r.enforcement == "advisory"]

    def to_json(self) -> dict[str, Any]:
        return {
            "preset": self.preset,
            "summary": {
                "resources": len(self.resources),
                "policies": len(self.policies),
                "violations": len(self.violations),
                "advisories": len(self.advisories),
            },
            "resources": self.resources,
            "outputs": self.outputs,
            "policies": self.policies,
            "results": [asdict(r) for r in self.results],
        }


def _redacted(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: ("[secret]" if k in _REDACT else _redacted(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    return value


def run_preset(preset: str, overrides: Mapping[str, Any] | None = None) -> CheckReport:
    """Run the program for ``preset`` under mocks; ``overrides`` replace config keys."""
    import pulumi
    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    from .mocks import AwsMocks, RecordingMonitor
    from .settings import load_settings
    from .stack import define_stack

    config = {**preset_config(preset), **(overrides or {})}
    region = str(config.get("aws:region", "us-east-1"))
    mocks = AwsMocks(region)
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=preset, preview=False, monitor=monitor)
    pulumi.runtime.set_all_config(
        {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}
    )
    captured: dict[str, Any] = {}

    def program() -> None:
        outputs = define_stack(load_settings())
        pulumi.Output.from_input(outputs).apply(captured.update)

    _sync_await(run_pulumi_func(program))

    urns = {}
    for urn in monitor.resources:
        type_part, name = urn.split("::")[-2:]
        urns[(type_part.split("$")[-1], name)] = urn
    graph = [
        GraphEntry(
            r.type, r.name, urns.get((r.type, r.name), f"urn:{r.type}::{r.name}"), r.inputs, r.state
        )
        for r in mocks.recorded
    ]
    results = evaluate(graph)
    policies = []
    by_id = {c.id: c for c in CONTROLS}
    for policy in pack_policies():
        control = by_id.get(policy.name)
        mine = [r for r in results if r.policy == policy.name]
        policies.append(
            {
                "name": policy.name,
                "control": control.control if control else "plantstream",
                "description": policy.description,
                "enforcement": "advisory"
                if policy.name.startswith("plantstream-declared")
                else "mandatory",
                "status": (
                    "fail"
                    if any(r.enforcement == "mandatory" for r in mine)
                    else "advisory"
                    if mine
                    else "pass"
                ),
                "findings": len(mine),
            }
        )
    resources = [
        {
            "type": g.resource_type,
            "name": g.name,
            "urn": g.urn,
            "inputs": _redacted(g.inputs),
            "state": _redacted(g.state),
            "dependencies": monitor.dependencies.get(g.urn, []),
            "options": monitor.options.get(g.urn, {}),
        }
        for g in graph
    ]
    return CheckReport(preset, resources, _redacted(captured), policies, results)


def _print_text(report: CheckReport) -> None:
    print(f"preset {report.preset}: {len(report.resources)} resources")
    for res in report.resources:
        print(f"  {res['type']}  {res['name']}")
        print(f"      {json.dumps(res['inputs'], sort_keys=True, default=str)}")
    print(f"\npolicies ({len(report.policies)}):")
    for pol in report.policies:
        print(f"  [{pol['status'].upper():8}] {pol['name']}  ({pol['control']})")
        for r in report.results:
            if r.policy == pol["name"]:
                print(f"      {r.enforcement}: {r.message}  <{r.urn}>")
    print(f"\n{len(report.violations)} violations, {len(report.advisories)} advisories")


def policy_table() -> str:
    """The README's policy table, straight from the controls (so the two cannot drift)."""
    rows = [
        "| policy | control | what it enforces | seed deviation allowed |",
        "| --- | --- | --- | --- |",
    ]
    for c in CONTROLS:
        kind = "yes, declared with a reason" if c.waivable else "no"
        rows.append(f"| `{c.id}` | {c.control} | {c.description} | {kind} |")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m plantstream_infra.check",
        description=__doc__.split("\n")[0] if __doc__ else None,
    )
    parser.add_argument("--preset", help=f"one of: {', '.join(presets())}")
    parser.add_argument(
        "--list-policies", action="store_true", help="print the policy table (Markdown) and exit"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key: plantstream:stream='{\"shardCount\":4}'"
        " (VALUE is JSON or a plain string)",
    )
    args = parser.parse_args(argv)
    if args.list_policies:
        print(policy_table())
        return 0
    if not args.preset:
        parser.error("--preset is required")
    from .settings import SettingsError

    overrides: dict[str, Any] = {}
    for item in args.set:
        key, _, raw = item.partition("=")
        try:
            overrides[key] = json.loads(raw)
        except ValueError:
            overrides[key] = raw
    try:
        report = run_preset(args.preset, overrides)
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        json.dump(report.to_json(), sys.stdout, indent=2, sort_keys=True, default=str)
        print()
    else:
        _print_text(report)
    return 1 if report.violations else 0


if __name__ == "__main__":
    raise SystemExit(main())
