"""Every JSON store: one reader (damaged -> a ConfigError naming the file, the original moved aside,
never read as empty and overwritten) and one atomic writer; non-UTF-8 files and a bad --server."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from llmtp.adapters import files
from llmtp.cli.main import run
from llmtp.errors import ConfigError, UsageError
from llmtp.settings import load_settings

DAMAGED = {"garbage": b'{"a": [1, 2', "empty": b"", "list": b"[]", "number": b"5", "latin1": b'{"k": "\xe9"}'}


@pytest.fixture
def settings(llmtp_home):
    return load_settings().settings


def cli(argv: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        run(argv)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def aside(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name + ".corrupt-*"))


# --- the shared reader and writer ------------------------------------------------------------------


@pytest.mark.parametrize("name", DAMAGED)
def test_reader_refuses_damage_and_keeps_the_original(tmp_path, name):
    p = tmp_path / "store.json"
    p.write_bytes(DAMAGED[name])
    with pytest.raises(ConfigError) as exc:
        files.read_json_store(p, dict[str, int], what="test store", hint="Do this.")
    assert f"The test store {p} is damaged: " in exc.value.message and exc.value.hint == "Do this."
    kept = aside(p)
    assert not p.exists() and len(kept) == 1 and kept[0].read_bytes() == DAMAGED[name]
    assert str(kept[0]) in exc.value.message
    files.write_json_atomic(p, {"new": 1})  # the next write cannot touch what was kept
    assert kept[0].read_bytes() == DAMAGED[name]


def test_reader_messages_say_what_is_wrong(tmp_path):
    p = tmp_path / "s.json"
    for data, says in (
        (b"[]", "unexpected content at the top level"),
        (b'{"a": "x"}', "at a:"),
        (b"{", "not valid JSON"),
        (b"\xff", "not UTF-8"),
    ):
        p.write_bytes(data)
        with pytest.raises(ConfigError, match=says):
            files.read_json_store(p, dict[str, int], what="s", hint="")
    assert files.read_json_store(tmp_path / "none.json", dict[str, int], what="s", hint="", default={}) == {}


def test_unreadable_store_is_an_error_and_stays(tmp_path):
    p = tmp_path / "dir.json"
    p.mkdir()  # reading a directory fails with an OSError, like a permission problem would
    with pytest.raises(ConfigError, match="Cannot read the s "):
        files.read_json_store(p, dict, what="s", hint="")
    assert p.is_dir() and aside(p) == []


def test_writer_is_atomic_fsynced_and_uses_unique_temp_names(tmp_path, monkeypatch):
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    p = tmp_path / "s.json"
    files.write_json_atomic(p, {"a": 1})
    assert json.loads(p.read_text()) == {"a": 1} and len(synced) == 2  # the file, then its directory
    (tmp_path / "s.tmp").write_text("someone else's")  # a fixed .tmp name would be clobbered
    (tmp_path / "s.json.tmp").write_text("someone else's")
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            for j in range(20):
                files.write_json_atomic(p, {"writer": i, "n": j})
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and json.loads(p.read_text())["n"] == 19
    assert sorted(x.name for x in tmp_path.iterdir()) == ["s.json", "s.json.tmp", "s.tmp"]
    assert (tmp_path / "s.tmp").read_text() == "someone else's"


def test_a_failed_write_keeps_the_old_record(tmp_path):
    p = tmp_path / "s.json"
    files.write_json_atomic(p, {"old": 1})
    with pytest.raises(TypeError):
        files.write_json_atomic(p, {"bad": object()})
    assert json.loads(p.read_text()) == {"old": 1} and [x.name for x in tmp_path.iterdir()] == ["s.json"]


# --- the stores ------------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"not json", b"[]", b'{"alias": {"Q4": {"repo": "x"}}}', b"5"])
def test_pulled_json_damage_is_an_error_not_an_empty_record(settings, data, capsys):
    from llmtp.services.models import pulls

    reg = pulls.registry_path(settings)
    reg.parent.mkdir(parents=True, exist_ok=True)
    reg.write_bytes(data)
    with pytest.raises(ConfigError, match="record of pulled models .* is damaged"):
        pulls.pulled(settings, "alias", None)
    assert aside(reg)[0].read_bytes() == data
    reg.write_bytes(data)
    code, _, err = cli(["models", "list"], capsys)
    assert code == 2 and "pulled.json is damaged" in err and "Traceback" not in err


def test_pulled_json_with_extra_fields_round_trips(settings):
    from llmtp.services.models import pulls

    pulls._record(settings, "k", "Q4", {"path": "/x.gguf", "repo": "r", "size": 5})
    assert pulls.load_registry(settings) == {"k": {"Q4": {"path": "/x.gguf", "repo": "r", "size": 5}}}


@pytest.mark.parametrize("data", [b"5", b'{"a": 1}', b'[{"model": 1}]', b"[{"])
def test_calibration_store_damage(settings, data):
    from llmtp.core.calibrate import CalibrationRecord
    from llmtp.services.stores import calibration

    p = calibration.store_path(settings)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    with pytest.raises(ConfigError, match="memory calibration store .* is damaged"):
        calibration.factors_for(settings, "m")
    assert aside(p)[0].read_bytes() == data
    rec = CalibrationRecord(
        model="m",
        build="b",
        ctx=512,
        cache_type="f16",
        predicted={"model": 1, "context": 1, "compute": 1},
        actual={"model": 2, "context": 1, "compute": 1},
    )
    calibration.record(settings, rec)  # after the error: a fresh store, the damaged one kept
    assert calibration.factors_for(settings, "m")[1] == 1 and aside(p)[0].read_bytes() == data


def test_setup_state_damage(settings):
    from llmtp.services.setup import progress as setup

    p = setup.state_path(settings)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"[]")
    with pytest.raises(ConfigError, match="setup progress file"):
        setup.load_state(settings)
    p.write_text(json.dumps({"schema": 0, "steps": {}}))  # an older layout: redone, not an error
    assert setup.load_state(settings)["steps"] == {}


def test_model_settings_and_baseline_damage_are_moved_aside(settings):
    from llmtp.services.stores import mtp_settings
    from llmtp.services.verify import baselines

    f = mtp_settings._file(settings, "m-key")
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_bytes(b"{trunc")
    with pytest.raises(ConfigError, match="model settings .* is damaged"):
        mtp_settings.load(settings, "m-key")
    assert aside(f)[0].read_bytes() == b"{trunc"
    b = baselines._file(settings, "k")
    b.parent.mkdir(parents=True, exist_ok=True)
    b.write_bytes(b"5")
    with pytest.raises(ConfigError, match="verify baseline"):
        baselines.load(settings, "k")
    assert aside(b)[0].read_bytes() == b"5"


# --- build manifests: a damaged one is listed as broken, never dropped -------------------------------


def test_truncated_manifest_is_listed_as_broken(settings, capsys):
    from llmtp.services.build import installed

    for bid in ("b1-cpu-aaaaaaaa", "b2-cpu-bbbbbbbb"):
        d = settings.builds_dir / bid
        (d / "bin").mkdir(parents=True)
        m = installed.BuildManifest(
            id=bid,
            source="pypi",
            source_identity="x",
            profile="cpu",
            backend="cpu",
            cmake_options={},
            targets=[],
            inputs_hash=bid,
            started_at="2026",
        )
        (d / "manifest.json").write_text(m.model_dump_json())
    good = (settings.builds_dir / "b2-cpu-bbbbbbbb" / "manifest.json").read_bytes()
    truncated = good[: len(good) // 2]
    (settings.builds_dir / "b2-cpu-bbbbbbbb" / "manifest.json").write_bytes(truncated)
    (settings.builds_dir / "b3-cpu-cccccccc").mkdir()  # no manifest at all

    assert [b.id for b in installed.list_builds(settings)] == ["b1-cpu-aaaaaaaa"]
    broken = {b.id: b.error for b in installed.list_broken(settings)}
    assert set(broken) == {"b2-cpu-bbbbbbbb", "b3-cpu-cccccccc"}
    assert "build manifest" in broken["b2-cpu-bbbbbbbb"] and "not valid JSON" in broken["b2-cpu-bbbbbbbb"]
    from typer.testing import CliRunner

    from llmtp.cli.main import app

    r = CliRunner().invoke(app, ["builds", "list"])
    assert r.exit_code == 0 and "no builds yet" not in r.output
    [row] = [line for line in r.output.splitlines() if "b2-cpu-bbbbbbbb" in line]
    assert "BROKEN: The build manifest" in row
    rows = json.loads(CliRunner().invoke(app, ["builds", "list", "--json"]).output)
    assert {r["id"]: r["status"] for r in rows} == {
        "b1-cpu-aaaaaaaa": "ok",
        "b2-cpu-bbbbbbbb": "broken",
        "b3-cpu-cccccccc": "broken",
    }
    code, _, err = cli(["builds", "use", "b2-cpu-bbbbbbbb"], capsys)
    assert code == 2 and "is damaged" in err
    assert (settings.builds_dir / "b2-cpu-bbbbbbbb" / "manifest.json").read_bytes() == truncated  # kept in place
    assert installed.prune(settings, keep=0) == ["b1-cpu-aaaaaaaa"]  # prune deletes only what it can read
    assert (settings.builds_dir / "b2-cpu-bbbbbbbb").is_dir()


def test_adopting_a_tree_with_a_damaged_manifest_is_refused(settings, tmp_path):
    from llmtp.adapters.runner import Completed
    from llmtp.services.build import installed

    fixtures = Path(__file__).parent / "fixtures" / "llama" / "b11434-cpu"

    class Probe:
        def run(self, argv, **kw):
            out = {
                "--version": "server-version.txt",
                "--help": "server-help.txt",
                "--list-devices": "list-devices.txt",
            }[argv[1]]
            return Completed(list(argv), 0, "", (fixtures / out).read_text())

    (tmp_path / "x" / "bin").mkdir(parents=True)
    (tmp_path / "x" / "bin" / "llama-server").write_text("")
    (tmp_path / "x" / "manifest.json").write_text('{"id": ')
    with pytest.raises(ConfigError, match="build manifest .* is damaged"):
        installed.adopt(settings, tmp_path / "x" / "bin", Probe())
    assert (tmp_path / "x" / "manifest.json").read_text() == '{"id": '


# --- non-UTF-8 text files and --server -----------------------------------------------------------------


def test_non_utf8_config_toml_exits_2(settings, capsys):
    settings.config_file.parent.mkdir(parents=True, exist_ok=True)
    settings.config_file.write_bytes(b"port = 8081\n# caf\xe9\n")
    code, _, err = cli(["config", "show"], capsys)
    assert code == 2 and "is not UTF-8 text" in err and "Traceback" not in err


@pytest.mark.parametrize("kind", ["not executable", "directory", "missing", "fifo"])
def test_server_option_must_be_an_executable_file(tmp_path, kind, capsys):
    p = tmp_path / "llama-server"
    if kind == "not executable":
        p.write_text("#!/bin/sh\n")
        p.chmod(0o644)
    elif kind == "directory":
        p.mkdir()
    elif kind == "fifo":
        os.mkfifo(p)
    with pytest.raises(UsageError):
        files.executable_file(p, option="--server")
    code, _, err = cli(["serve", "whatever", "--server", str(p), "--dry-run"], capsys)
    assert code == 2 and "--server" in err and "Traceback" not in err


def test_serve_record_damage_is_named_and_moved_aside(tmp_path):
    """A serve record (state_dir/serve-PORT.json) that is not a record: a ConfigError naming it, the file
    moved aside, nothing signalled on its word; the next read finds none."""
    from llmtp.services.stores import serve_records

    p = serve_records.state_path(tmp_path, 8123)
    for data in DAMAGED.values():
        p.write_bytes(data)
        with pytest.raises(ConfigError, match="serve record") as exc:
            serve_records.load_record(tmp_path, 8123)
        assert str(p) in exc.value.message and not p.exists()
        assert serve_records.load_record(tmp_path, 8123) is None
    assert len(list(tmp_path.glob("serve-8123.json.corrupt-*"))) == len(DAMAGED)


@pytest.mark.parametrize("name", DAMAGED)
def test_cache_entries_that_do_not_validate_are_as_if_absent(tmp_path, name):
    """Caches (hub listings, probed capabilities, GGUF headers) read through files.read_json_cache: a bad
    entry is None (recomputed and overwritten), never an error and never moved aside."""
    from llmtp.core.capabilities import Capabilities

    p = tmp_path / "c.json"
    p.write_bytes(DAMAGED[name])
    assert files.read_json_cache(p, Capabilities) is None and p.exists()
    assert files.read_json_cache(tmp_path / "missing.json", Capabilities) is None
    p.write_text(Capabilities(flags=["--port"]).model_dump_json())
    assert files.read_json_cache(p, Capabilities).flags == ["--port"]


def test_every_json_file_is_read_through_the_shared_readers():
    """No module parses a JSON file by hand: stores use read_json_store, caches read_json_cache. The
    exceptions read no store: the warm start runs before pydantic loads and must never fail a command;
    detect_parse parses system_profiler's output, core/chat llama-server's streamed chat chunks and settings the
    LLMTP_SETS environment value, not files."""
    import re

    pkg = Path(files.__file__).resolve().parent.parent
    allowed = {
        "adapters/files.py",
        "services/serve/warm_start.py",
        "core/detect_parse.py",
        "core/chat.py",
        "settings.py",
    }
    pattern = re.compile(r"json\.loads?\(|model_validate_json\(|validate_json\(")
    readers = {str(p.relative_to(pkg)) for p in pkg.rglob("*.py") if pattern.search(p.read_text(encoding="utf-8"))}
    assert readers <= allowed, readers - allowed
