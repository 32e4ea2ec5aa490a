"""How a service process finds its settings without importing ``pipelines``."""

from __future__ import annotations

import os
import stat

import pytest
from cip.pipelines.cli import main as cli_main
from cip.pipelines.cmd_serve import serving_settings
from cip.profiles.errors import ConfigError
from cip.serving.settings import (
    SETTINGS_ENV,
    SETTINGS_FILE_ENV,
    WORKSPACE_SETTINGS,
    ServingSettings,
)


def test_load_order_json_then_file_then_workspace(tmp_path) -> None:
    a = ServingSettings.for_folder(tmp_path / "a", port=3001)
    b = ServingSettings.for_folder(tmp_path / "b", port=3002)
    c = ServingSettings.for_folder(tmp_path / "c", port=3003)
    b_file = b.save(tmp_path / "b.json")
    c.save(tmp_path / "ws" / WORKSPACE_SETTINGS)
    assert stat.S_IMODE(os.stat(b_file).st_mode) == 0o600  # store URLs may hold a password
    ws = str(tmp_path / "ws")
    env = {SETTINGS_ENV: a.to_env(), SETTINGS_FILE_ENV: str(b_file), "CIP_WORKSPACE": ws}
    assert ServingSettings.load(env) == a
    del env[SETTINGS_ENV]
    assert ServingSettings.load(env) == b
    del env[SETTINGS_FILE_ENV]
    assert ServingSettings.load(env) == c


def test_load_errors_are_one_clear_line(tmp_path) -> None:
    with pytest.raises(ConfigError, match="set CIP_SERVING_SETTINGS"):
        ServingSettings.load({})
    with pytest.raises(ConfigError, match="run `cip serve --check` in that workspace"):
        ServingSettings.load({"CIP_WORKSPACE": str(tmp_path)})
    with pytest.raises(ConfigError, match="cannot read the serving settings"):
        ServingSettings.load({SETTINGS_FILE_ENV: str(tmp_path / "missing.json")})
    (tmp_path / "bad.json").write_text('{"port": 1}')
    with pytest.raises(ConfigError, match="bad.json is not valid serving settings"):
        ServingSettings.load({SETTINGS_FILE_ENV: str(tmp_path / "bad.json")})


def test_cip_serve_saves_the_settings_a_bare_bentoml_worker_reads(tmp_workspace) -> None:
    ws = tmp_workspace
    assert not (ws.root / WORKSPACE_SETTINGS).exists()
    assert cli_main(["--workspace", str(ws.root), "serve", "--check"]) == 0
    loaded = ServingSettings.load({"CIP_WORKSPACE": str(ws.root)})
    assert loaded == serving_settings(ws)
    assert loaded.store_path == str(ws.store_path)
