"""Fixtures for the modules that test against the ad-platform sandbox: the sandbox for the
module (started with the tokens of the module's own `sandbox_tokens` fixture), its admin
client, and `clean_sandbox`, which a module applies to every test with
`pytestmark = pytest.mark.usefixtures("clean_sandbox")`."""

from __future__ import annotations

import pytest

from connectors.ad_platforms.sandbox import SandboxServer


@pytest.fixture(scope="module")
def server(tmp_path_factory, sandbox_tokens):
    with SandboxServer(tmp_path_factory.mktemp("sandbox"), **sandbox_tokens) as running:
        yield running


@pytest.fixture
def admin(server):
    return server.admin


@pytest.fixture
def clean_sandbox(server):
    """After the test: a crashed sandbox restarted, and every fault cleared."""
    yield
    if not server.running:
        server.restart()
    server.admin.set_faults()
