"""The kill switch: file flips, the environment flag, failing closed, atomic writes."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest

from connectors.kill_switch import KillSwitch, default_path


@pytest.fixture
def switch(tmp_path) -> KillSwitch:
    return KillSwitch(tmp_path / "control" / "kill_switch.json", environ={})


def test_off_until_engaged_then_off_again(switch):
    state = switch.state()
    assert (state.engaged, state.source) == (False, "off") and not switch.engaged
    on = switch.engage("spend anomaly on search", "marketing-lead")
    assert on.engaged and on.source == "file" and switch.engaged
    assert (on.reason, on.by) == ("spend anomaly on search", "marketing-lead")
    assert on.at.endswith("Z") and "spend anomaly" in on.describe()
    off = switch.release("growth-analyst")
    assert not off.engaged and off.source == "off" and off.by == "growth-analyst"
    assert "OFF" in off.describe()


def test_the_file_is_plain_json_written_atomically(switch):
    switch.engage("why", "me")
    doc = json.loads(switch.path.read_text())
    assert doc["engaged"] is True and doc["schema"] == "adloop.kill_switch/1"
    assert sorted(p.name for p in switch.path.parent.iterdir()) == ["kill_switch.json"]
    assert stat.S_IMODE(switch.path.stat().st_mode) & 0o044 == 0o044  # others can read it


def test_another_process_sees_the_flip(switch):
    other = KillSwitch(switch.path, environ={})
    switch.engage("stop", "ops")
    assert other.engaged
    switch.release("ops")
    assert not other.engaged


@pytest.mark.parametrize("flag", ["1", "true", "YES", " on "])
def test_the_environment_flag_engages_regardless_of_the_file(switch, flag):
    switch.release("ops")
    state = KillSwitch(switch.path, environ={"ADLOOP_KILL_SWITCH": flag}).state()
    assert state.engaged and state.source == "env"


@pytest.mark.parametrize("flag", ["", "0", "false", "off", "no"])
def test_a_false_flag_leaves_the_file_in_charge(switch, flag):
    env_switch = KillSwitch(switch.path, environ={"ADLOOP_KILL_SWITCH": flag})
    assert not env_switch.engaged
    switch.engage("file says stop", "ops")
    assert env_switch.state().source == "file"


def test_it_fails_closed(switch):
    weird = KillSwitch(switch.path, environ={"ADLOOP_KILL_SWITCH": "maybe"}).state()
    assert weird.engaged and "unrecognised" in weird.reason
    switch.path.parent.mkdir(parents=True)
    switch.path.write_text("{not json")
    corrupt = switch.state()
    assert corrupt.engaged and corrupt.source == "file" and "corrupt" in corrupt.reason
    switch.path.write_text(json.dumps({"engaged": "no"}))
    assert switch.engaged


def test_flipping_needs_a_reason_and_a_name(switch):
    with pytest.raises(ValueError, match="reason"):
        switch.engage("  ", "ops")
    with pytest.raises(ValueError, match="name"):
        switch.release("")
    assert not switch.path.exists()


def test_default_path(tmp_path):
    warehouse = tmp_path / "data" / "warehouse.duckdb"
    assert default_path({"ADLOOP_WAREHOUSE_PATH": str(warehouse)}) == (
        tmp_path / "data" / "control" / "kill_switch.json"
    )
    explicit = tmp_path / "elsewhere.json"
    environ = {"ADLOOP_WAREHOUSE_PATH": str(warehouse), "ADLOOP_KILL_SWITCH_PATH": str(explicit)}
    assert KillSwitch(environ=environ).path == explicit
    with pytest.raises(RuntimeError, match="ADLOOP_KILL_SWITCH_PATH"):
        KillSwitch(environ={})


def test_reading_it_is_cheap_enough_for_every_call(switch):
    switch.engage("stop", "ops")
    started = time.perf_counter()
    for _ in range(2000):
        assert switch.engaged
    assert (time.perf_counter() - started) / 2000 < 0.002  # well under a millisecond typically


def test_the_default_environment_is_os_environ(tmp_path, monkeypatch):
    monkeypatch.setenv("ADLOOP_KILL_SWITCH_PATH", str(tmp_path / "ks.json"))
    monkeypatch.setenv("ADLOOP_KILL_SWITCH", "1")
    switch = KillSwitch()
    assert switch.path == Path(os.environ["ADLOOP_KILL_SWITCH_PATH"]) and switch.engaged
