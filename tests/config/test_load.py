"""Config loading: every error kind, all reported at once, secrets only from files and never printed."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import tomllib
from importlib import resources
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mynabox.adapters.keyfiles import CREDENTIALS_ENV
from mynabox.config import Config, ConfigError, Credential, load_config, parse_config
from mynabox.config.fields import defaults
from mynabox.config.model import DisplayDriver, ExtendedApdu, PinFactory
from mynabox.fleet.provision import generate_keys
from mynabox.payload.envelope import is_device_id
from mynabox.payload.keys import KeyFileError
from mynabox.payload.topics import topic
from mynabox.vocab import ConsentMode
from support.boxfiles import AUDIT_BYTES, VALID, make_box

EXAMPLE = resources.files("mynabox") / "data" / "config.example.toml"


@pytest.fixture
def box(tmp_path: Path) -> Path:
    """A config dir with the real files the config names (a test PKI), and a credentials dir beside it."""
    return make_box(tmp_path)


def write(box: Path, text: str) -> Path:
    path = box / "config.toml"
    path.write_text(text)
    return path


def env(box: Path) -> dict[str, str]:
    return {CREDENTIALS_ENV: str(box / "creds")}


def issues_of(path: Path, environ: dict[str, str], *, check_files: bool = True) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=environ, check_files=check_files)
    return [str(i) for i in info.value.issues]


def test_valid_config_loads_with_defaults_and_credentials(box: Path) -> None:
    config = load_config(write(box, VALID), environ=env(box))
    assert config.device.id == "amb-7"
    assert config.mqtt.port == 8883 and config.display.i2c_address == 0x3C
    assert config.summary.ca_file == box / "ca.pem"  # relative to the config file
    assert config.sealing.device_key == Credential("device-key", box / "creds")
    assert config.audit.key.read().reveal() == AUDIT_BYTES
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.device.id = "other"  # type: ignore[misc]
    # Sections left out are their dataclass's defaults, which the loader reads from there.
    for name in ("reader", "consent", "display", "panel", "storage", "log"):
        section = getattr(config, name)
        assert section == type(section)(), name


def test_choice_fields_load_as_typed_values(box: Path) -> None:
    defaults = load_config(write(box, VALID), environ=env(box))
    assert defaults.reader.extended_apdu.forced is None and defaults.consent.default.mode is None
    assert defaults.log.level.number == logging.INFO
    text = VALID + (
        '[reader]\nextended_apdu = "off"\n[consent]\ndefault = "emergency"\n[display]\ndriver = "dummy"\n'
        '[panel]\npin_factory = "mock"\n[log]\nlevel = "debug"\n'
    )
    config = load_config(write(box, text), environ=env(box))
    assert config.reader.extended_apdu is ExtendedApdu.OFF and config.reader.extended_apdu.forced is False
    assert config.consent.default.mode is ConsentMode.LIFE_SAVING_EXCEPTION
    assert config.display.driver is DisplayDriver.DUMMY and config.panel.pin_factory is PinFactory.MOCK
    assert config.log.level.number == logging.DEBUG
    # Printed back as the words the file uses.
    shown = config.masked_dict()
    assert (shown["reader"]["extended_apdu"], shown["consent"]["default"]) == ("off", "emergency")
    assert type(shown["log"]["level"]) is str
    on = load_config(write(box, VALID + '[reader]\nextended_apdu = "on"\n'), environ=env(box))
    assert on.reader.extended_apdu.forced is True
    oral = load_config(write(box, VALID + '[consent]\ndefault = "oral"\n'), environ=env(box))
    assert oral.consent.default.mode is ConsentMode.ORAL_CONSENT


@pytest.mark.parametrize("value", ['"ON"', "true", "[1]", '"sh1107"'])
def test_a_choice_outside_its_words_is_refused(box: Path, value: str) -> None:
    found = issues_of(write(box, VALID + f"[display]\ndriver = {value}\n"), env(box))
    assert len(found) == 1 and found[0].endswith("is not one of 'ssd1306', 'sh1106', 'dummy'")


def test_every_problem_is_reported_at_once_with_hints(box: Path) -> None:
    text = VALID.replace('host = "127.0.0.1"', 'host = "127.0.0.1"\nprot = 1883')
    text = text.replace('[device]\nid = "amb-7"', '[device]\nid = "Amb 7"\n[display]\ni2c_address = 0x99')
    text = text.replace('url = "https://127.0.0.1:8443/v1"', 'url = "http://127.0.0.1/v1"')
    text += '[dispaly]\nx = 1\n[log]\nlevel = "loud"\n[storage]\noutbox_retention_h = "many"\n'
    found = issues_of(write(box, text), env(box))
    assert "mqtt.prot: unknown key — did you mean 'port'?" in found
    assert (
        "display.i2c_address: 0x99 is not a 7-bit I2C address (0x03–0x77) — SSD1306/SH1106 use 0x3c or 0x3d"
        in found
    )
    assert any(f.startswith("device.id: 'Amb 7' is not allowed") for f in found)
    assert any(f.startswith("summary.url: 'http://127.0.0.1/v1' is not allowed") for f in found)
    assert any(f.startswith("dispaly: unknown section — did you mean 'display'?") for f in found)
    assert any(f.startswith("log.level: 'loud' is not one of") for f in found)
    assert "storage.outbox_retention_h: expected an integer, got a string" in found
    assert len(found) == 7


@pytest.mark.parametrize("check_files", [True, False])
@pytest.mark.parametrize("url", ["https://127.0.0.1:99999/v1", "https://127.0.0.1:x/v1", "https://[::1/v1"])
def test_a_summary_url_without_a_usable_host_and_port_is_refused(
    box: Path, url: str, *, check_files: bool
) -> None:
    text = VALID.replace('url = "https://127.0.0.1:8443/v1"', f'url = "{url}"')
    found = issues_of(write(box, text), env(box), check_files=check_files)
    assert found == [f"summary.url: {url!r} has a bad host or port — https://host[:port][/prefix]"]


@pytest.mark.parametrize(
    "device_id", ["amb-01", "a", "0", "x" * 32, "x" * 33, "-amb", "Amb-01", "unit_3.b", "a.b", "amb/01", ""]
)
def test_one_device_id_rule_for_config_topics_and_provisioning(tmp_path: Path, device_id: str) -> None:
    """The config accepts exactly the ids the envelope, the topic scheme and provisioning accept."""
    good = is_device_id(device_id)
    text = VALID.replace('id = "amb-7"', f"id = {json.dumps(device_id)}")
    try:
        parse_config(text, source=tmp_path / "config.toml", environ={}, check_files=False)
        config_ok = True
    except ConfigError as err:
        config_ok = not any(str(i).startswith("device.id:") for i in err.issues)
    try:
        topic(device_id, "state")
        topic_ok = True
    except ValueError:
        topic_ok = False
    try:
        generate_keys(tmp_path / "keys", device_id)
        provision_ok = True
    except ValueError:
        provision_ok = False
    assert config_ok is topic_ok is provision_ok is good


def test_missing_required_keys_and_sections(box: Path) -> None:
    text = VALID.replace('host = "127.0.0.1"\n', "").replace('[audit]\nkey = "audit-key"\n', "")
    found = issues_of(write(box, text), env(box))
    assert "mqtt.host: missing (required)" in found
    assert "audit: missing section (required) — add a [audit] table" in found
    assert len(found) == 2  # not also "audit.key: missing"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("port = 0", "mqtt.port: 0 is out of range (1..65535)"),
        ("port = 70000", "mqtt.port: 70000 is out of range (1..65535)"),
        ("port = true", "mqtt.port: expected an integer, got a boolean"),
        ("port = 1.5", "mqtt.port: expected an integer, got a float"),
        ("window = 0", "mqtt.window: 0 is out of range (1..100)"),
        ("keepalive_s = [1]", "mqtt.keepalive_s: expected an integer, got an array"),
    ],
)
def test_types_and_ranges(box: Path, line: str, expected: str) -> None:
    text = VALID.replace('host = "127.0.0.1"', f'host = "127.0.0.1"\n{line}')
    assert issues_of(write(box, text), env(box)) == [expected]


def test_summary_lookup_time_limit(box: Path) -> None:
    assert load_config(write(box, VALID), environ=env(box)).summary.limit_s == 10.0
    url = 'url = "https://127.0.0.1:8443/v1"'
    text = VALID.replace(url, f"{url}\nlimit_s = 0.5")
    assert issues_of(write(box, text), env(box)) == ["summary.limit_s: 0.5 is out of range (1..120)"]


def test_a_home_directory_that_does_not_exist_is_a_config_error(box: Path) -> None:
    text = "credentials_dir = '~nosuchuser0'\n" + VALID.replace('"ca.pem"', '"~nosuchuser0/ca.pem"', 1)
    found = issues_of(write(box, text), {})
    assert "credentials_dir: '~nosuchuser0': no such user's home directory" in found
    assert any(
        f.endswith("'~nosuchuser0/ca.pem': no such user's home directory — write the path out in full")
        for f in found
    )


def test_i2c_address_accepts_hex_forms(box: Path) -> None:
    for form in ("0x3d", '"0x3d"', "61"):
        config = load_config(write(box, VALID + f"[display]\ni2c_address = {form}\n"), environ=env(box))
        assert config.display.i2c_address == 0x3D


def test_frames_dir_only_with_dummy_driver(box: Path) -> None:
    text = VALID + '[display]\ndriver = "sh1106"\nframes_dir = "frames"\n'
    assert issues_of(write(box, text), env(box)) == [
        "display.frames_dir: only used with driver = 'dummy' — remove it"
    ]
    ok = load_config(write(box, text.replace("sh1106", "dummy")), environ=env(box))
    assert ok.display.frames_dir == box / "frames"


def test_toml_syntax_error_is_a_config_error(box: Path) -> None:
    found = issues_of(write(box, "[device\nid = 1\n"), env(box))
    assert len(found) == 1 and found[0].startswith("<toml>: syntax error")


def test_missing_config_file(tmp_path: Path) -> None:
    found = issues_of(tmp_path / "absent.toml", {})
    assert found == ["<file>: cannot read (No such file or directory)"]


def test_path_comes_from_environment_when_not_given(box: Path) -> None:
    path = write(box, VALID)
    config = load_config(environ={**env(box), "MYNABOX_CONFIG": str(path)})
    assert config.source == path


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["device", "mqtt", "display", "audit", "x", "credentials_dir"]),
        st.one_of(
            st.dictionaries(
                st.sampled_from(["id", "port", "i2c_address", "key", "host", "ca_file", "frames_dir", "zz"]),
                st.one_of(
                    st.integers(), st.text(max_size=80), st.booleans(), st.floats(), st.lists(st.integers())
                ),
                max_size=5,
            ),
            st.text(max_size=10),
            st.integers(),
        ),
        max_size=6,
    )
)
def test_any_document_gives_a_config_or_a_config_error(doc: dict[str, object]) -> None:
    lines = []
    for name, value in doc.items():
        if isinstance(value, dict):
            lines.append(f"[{name}]")
            lines += [f"{key} = {json.dumps(v)}" for key, v in value.items() if json.dumps(v)[0] not in "NI-"]
        else:
            lines.insert(0, f"{name} = {json.dumps(value)}")
    try:
        parse_config("\n".join(lines), source=Path("/nonexistent/c.toml"), environ={}, check_files=True)
    except ConfigError as err:
        assert err.issues and all(isinstance(i.key, str) for i in err.issues)


@pytest.mark.parametrize(
    "value",
    [
        "-----BEGIN PRIVATE KEY-----\\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49\\n-----END PRIVATE KEY-----",
        "c2VjcmV0LWtleS1tYXRlcmlhbC10aGF0LXNob3VsZC1ub3QtYmUtaGVyZQ==",
        "8f14e45fceea167a5a36dedd4bea2543f14e45fceea167a5a36dedd4bea25430",
    ],
)
def test_key_material_in_the_toml_is_rejected_without_echo(box: Path, value: str) -> None:
    text = VALID.replace('key = "audit-key"', f'key = "{value}"')
    found = issues_of(write(box, text), env(box))
    assert found == [
        "audit.key: looks like key material (value not shown) — secrets go in files named by credential "
        "(LoadCredential=), never in the config"
    ]
    assert all(value[20:40] not in f for f in found)


def test_credential_files_are_checked(box: Path) -> None:
    (box / "creds" / "audit-key").write_bytes(b"short")
    (box / "creds" / "device-key").write_text("not a key\n")
    (box / "creds" / "mqtt-client-key").unlink()
    found = issues_of(write(box, VALID), env(box))
    creds = box / "creds"
    assert found == [
        f"mqtt.client_key: {creds / 'mqtt-client-key'}: not found",
        f"sealing.device_key: {creds / 'device-key'}: not an unencrypted PEM private key",
        f"audit.key: {creds / 'audit-key'}: an audit key needs at least 32 bytes",
    ]


def test_file_checks_can_be_skipped(box: Path) -> None:
    for name in ("ca.pem", "client.pem", "gateway.pem"):
        (box / name).unlink()
    path = write(box, VALID)
    found = issues_of(path, {})
    assert found[0].startswith("credentials_dir: no credentials directory ($CREDENTIALS_DIRECTORY unset)")
    assert len(found) == 6  # the missing dir once, then five absent files
    config = load_config(path, environ={}, check_files=False)
    assert config.credentials_dir is None
    with pytest.raises(KeyFileError, match="CREDENTIALS_DIRECTORY is not set"):
        _ = config.audit.key.path


def test_credentials_dir_resolution_order(box: Path) -> None:
    dev = box / "dev-creds"
    (box / "creds").rename(dev)
    path = write(box, 'credentials_dir = "dev-creds"\n' + VALID)
    assert load_config(path, environ={}).credentials_dir == dev  # the TOML key, relative to the file
    other = box / "other"
    other.mkdir()
    by_env = load_config(path, environ={"MYNABOX_CREDENTIALS_DIR": str(other)}, check_files=False)
    assert by_env.credentials_dir == other
    systemd = load_config(
        path, environ={CREDENTIALS_ENV: str(dev), "MYNABOX_CREDENTIALS_DIR": str(other)}, check_files=True
    )
    assert systemd.credentials_dir == dev  # systemd's directory always wins
    found = issues_of(write(box, VALID.replace('"audit-key"', '"../audit"')), {CREDENTIALS_ENV: str(dev)})
    assert found == ["audit.key: '../audit' is not a credential name — letters, digits, '_', '.', '-'"]


def test_secrets_are_masked_everywhere(box: Path) -> None:
    config = load_config(write(box, VALID), environ=env(box))
    secret = AUDIT_BYTES.decode()
    device_pem = (box / "creds" / "device-key").read_text()
    rendered = [repr(config), str(config), repr(config.masked_dict()), repr(config.audit.key.read())]
    for text in rendered:
        assert secret not in text and "PRIVATE KEY" not in text and device_pem[40:80] not in text
    assert config.masked_dict()["audit"]["key"].endswith("(contents ********)")


def test_example_config_loads() -> None:
    with resources.as_file(EXAMPLE) as path:
        config = load_config(path, environ={}, check_files=False)
    assert isinstance(config, Config)
    text = EXAMPLE.read_text()
    # Every key is documented: each `key = ...` line is preceded by a comment somewhere in its block.
    keys = {f.name for section in dataclasses.fields(config) for f in _subfields(config, section.name)}
    for key in keys:
        assert f"{key} =" in text, f"example config lacks {key}"


def test_example_config_writes_the_dataclass_defaults() -> None:
    """The example may spell a default out (it documents it), but only as the dataclass has it: the one
    place defaults are written. Keys it leaves commented out are optional (no default value)."""
    example = tomllib.loads(EXAMPLE.read_text())
    with resources.as_file(EXAMPLE) as path:
        config = load_config(path, environ={}, check_files=False)
    checked = 0
    for section in dataclasses.fields(config):
        model = type(getattr(config, section.name))
        if not dataclasses.is_dataclass(model):
            continue
        for name, default in defaults(model).items():
            if default is None:
                assert name not in example.get(section.name, {}) or section.name == "device", name
                continue
            assert name in example[section.name], f"example config lacks {section.name}.{name}"
            # Read as the box reads it (relative paths, ints as floats, words as enum members).
            assert getattr(getattr(config, section.name), name) == default, f"{section.name}.{name}"
            checked += 1
    assert checked >= 25


def _subfields(config: Config, name: str) -> tuple[dataclasses.Field[object], ...]:
    value = getattr(config, name)
    return dataclasses.fields(value) if dataclasses.is_dataclass(value) else ()


def run_check_config(*args: str, environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k not in (CREDENTIALS_ENV, "MYNABOX_CONFIG")}
    return subprocess.run(
        [sys.executable, "-m", "mynabox.commands.check_config", *args],
        env={**full_env, **environ},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_check_config_prints_masked_effective_config(box: Path) -> None:
    path = write(box, VALID)
    done = run_check_config("--config", str(path), environ=env(box))
    assert done.returncode == 0, done.stderr
    assert (
        'id = "amb-7"' in done.stdout and "port = 8883" in done.stdout and "i2c_address = 0x3c" in done.stdout
    )
    assert "credential 'audit-key'" in done.stdout and "********" in done.stdout
    secret_files = [p.read_bytes() for p in (box / "creds").iterdir()]
    for data in secret_files:
        for line in data.decode().splitlines():
            if len(line) > 8 and "-----" not in line:
                assert line not in done.stdout + done.stderr


def test_check_config_reports_every_issue_and_exits_78(box: Path) -> None:
    path = write(box, VALID.replace("[mqtt]", "[mqtt]\nprot = 1\nwindow = 500").replace("amb-7", "AMB"))
    done = run_check_config("--config", str(path), environ={"MYNABOX_CONFIG": "/nonexistent"})
    assert done.returncode == 78  # EX_CONFIG, as the daemon (2 stays argparse's usage error)
    assert "mqtt.prot: unknown key — did you mean 'port'?" in done.stderr
    assert "mqtt.window: 500 is out of range (1..100)" in done.stderr
    assert "device.id: 'AMB' is not allowed" in done.stderr
    assert "credentials_dir: no credentials directory" in done.stderr
    skipped = run_check_config("--config", str(path), "--no-file-checks", environ={})
    assert skipped.returncode == 78 and "credentials_dir" not in skipped.stderr
