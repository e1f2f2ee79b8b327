"""Every input the program sends, nested blocks included, is a real argument of the installed SDK.

Python catches a wrong top-level keyword, but a misspelt key inside a dict block (``{"scan_on
_push": ...}``) would be sent as-is and only fail at ``pulumi up``; this walks the recorded inputs
against the SDK's ``*Args`` types.
"""

from __future__ import annotations

import importlib
import re
import warnings
from typing import Any

import pytest
from infra_helpers import PRESETS, Report

pytestmark = pytest.mark.infra

_ARGS_REF = re.compile(r"ForwardRef\('(\w+Args)'\)")


def _sdk() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pulumi-aws warns about its own deprecated modules
        from pulumi import _types

        return _types


def _module_and_args(token: str) -> tuple[Any, type]:
    package, path, cls = token.split(":")
    module_name = {
        "aws": "pulumi_aws",
        "random": "pulumi_random",
        "docker-build": "pulumi_docker_build",
    }[package]
    mod = path.split("/")[0]
    if mod not in ("index",):
        module_name += "." + ("lambda_" if mod == "lambda" else mod)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = importlib.import_module(module_name)
        return module, getattr(module, f"{cls}Args")


def _walk(module: Any, args_cls: type, value: Any, where: str, problems: list[str]) -> None:
    props = {pulumi_name: prop for _, pulumi_name, prop in _sdk()._py_properties(args_cls)}
    items = value if isinstance(value, list) else [value]
    for item in items:
        if not isinstance(item, dict):
            continue
        for key, sub in item.items():
            if key not in props:
                problems.append(f"{where}.{key} is not an argument of {args_cls.__name__}")
                continue
            ref = _ARGS_REF.search(str(props[key].fget.__annotations__.get("return")))
            if ref and sub not in (None, "[secret]"):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    nested = getattr(module, ref.group(1), None)
                if nested is not None:
                    _walk(module, nested, sub, f"{where}.{key}", problems)


@pytest.mark.parametrize("preset", PRESETS)
def test_every_input_is_a_known_sdk_argument(reports: dict[str, Report], preset: str) -> None:
    problems: list[str] = []
    for res in reports[preset].resources:
        module, args_cls = _module_and_args(res["type"])
        _walk(module, args_cls, res["inputs"], f"{res['type']}:{res['name']}", problems)
    assert problems == []


def test_taggable_types_list_covers_every_resource_that_takes_tags(
    reports: dict[str, Report],
) -> None:
    from plantstream_infra.policies.network import TAGGABLE_TYPES

    seen = {
        r["type"] for rep in reports.values() for r in rep.resources if r["type"].startswith("aws:")
    }
    takes_tags = set()
    for token in seen:
        _, args_cls = _module_and_args(token)
        if any(name == "tags" for _, name, _ in _sdk()._py_properties(args_cls)):
            takes_tags.add(token)
    assert takes_tags - TAGGABLE_TYPES == set()


def test_the_walk_catches_a_misspelt_nested_key() -> None:
    module, args_cls = _module_and_args("aws:ecr/repository:Repository")
    problems: list[str] = []
    _walk(module, args_cls, {"imageScanningConfiguration": {"scanOnPushh": True}}, "repo", problems)
    assert problems == [
        "repo.imageScanningConfiguration.scanOnPushh is not an argument of "
        "RepositoryImageScanningConfigurationArgs"
    ]
