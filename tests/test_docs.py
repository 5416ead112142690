"""The documentation names only settings that exist, and its manifests parse."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import yaml

from authz.config import Settings
from authz.engine import load_snapshot
from authz.policy.runner import run_suites
from authz.policy.suites import load_suites
from tests.conftest import REPO

# Variables read outside Settings: the config file's path, dev mode's key folder.
OTHER_VARIABLES = {"AUTHZ_CONFIG", "AUTHZ_DEV_DIR"}
# Variables of the clients' own examples and test harnesses, not of the service.
CLIENT_VARIABLES = {"AUTHZ_URL", "AUTHZ_BIN"}
SERVICE_DOCS = [
    "README.md",
    "docs/deploy.md",
    "docs/auth0-setup.md",
    "docs/policies.md",
    "docs/ARCHITECTURE.md",
]


def test_every_authz_variable_in_the_docs_is_a_setting():
    settings = {f"AUTHZ_{field.name.upper()}" for field in dataclasses.fields(Settings)} | OTHER_VARIABLES
    named: dict[str, set[str]] = {}
    for doc in SERVICE_DOCS:
        for name in re.findall(r"\bAUTHZ_[A-Z][A-Z_]*[A-Z]\b", (REPO / doc).read_text()):
            named.setdefault(name, set()).add(doc)
    unknown = {name: docs for name, docs in named.items() if name not in settings}
    assert not unknown, unknown
    # Every setting a user can give is documented in the README's table.
    readme = (REPO / "README.md").read_text()
    undocumented = {
        name
        for name in settings - OTHER_VARIABLES - {"AUTHZ_DEV", "AUTHZ_WARNINGS"}
        if f"`{name}`" not in readme
    }
    assert not undocumented, undocumented


def test_the_deploy_guides_manifests_parse_and_set_real_variables():
    text = (REPO / "docs/deploy.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.DOTALL)
    assert len(blocks) == 3
    documents = [doc for block in blocks for doc in yaml.safe_load_all(block)]
    assert {doc["kind"] for doc in documents} == {"Deployment", "Service", "Ingress", "Secret"}
    deployments = [doc for doc in documents if doc["kind"] == "Deployment"]
    assert len(deployments) == 2  # from a directory; replicated on a policy store
    settings = {field.name for field in dataclasses.fields(Settings)}
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        for container in [*pod["containers"], *pod.get("initContainers", [])]:
            for variable in container["env"]:
                assert variable["name"].removeprefix("AUTHZ_").lower() in settings, variable


def test_a_projected_configmap_layout_finds_its_suites(tmp_path: Path):
    # The kubelet's layout: files and tests/ link through `..data` to a timestamped folder.
    generation = tmp_path / "..2026_11_29"
    (generation / "tests").mkdir(parents=True)
    demo = REPO / "policies"
    for file in [demo / "model.conf", *demo.glob("*.csv")]:
        (generation / file.name).write_text(file.read_text())
    for suite in (demo / "tests").glob("*_test.yaml"):
        (generation / "tests" / suite.name).write_text(suite.read_text())
    (tmp_path / "..data").symlink_to(generation.name)
    for entry in generation.iterdir():
        (tmp_path / entry.name).symlink_to(f"..data/{entry.name}")

    suites = load_suites(tmp_path)
    assert [suite.file for suite in suites] == ["tests/orders_test.yaml"]
    results = run_suites(load_snapshot(tmp_path), suites)
    assert results
    assert all(result.passed for result in results)
