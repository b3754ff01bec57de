"""API key files: parsed exactly as llama-server b11434 parses --api-key-file, and a key refused by
llama-server is a configuration error for llmtp's own probe (reported once, never a restart loop)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from llmtp.core.apikey import parse_api_keys, unsendable
from llmtp.core.launch import LaunchSpec
from llmtp.core.restart import RestartPolicy
from llmtp.core.supervisor import State
from llmtp.errors import ConfigError, NetworkError
from llmtp.services.serve.supervisor import Supervisor, SupervisorConfig, read_api_key


def test_parse_like_getline_keeps_everything_but_the_newline():
    data = b"# comment\n\nk1\r\n  spaced key\n#x\nlast"
    assert parse_api_keys(data) == [b"k1\r", b"  spaced key", b"last"]
    assert parse_api_keys(b"") == [] and parse_api_keys(b"\n\n#only\n") == []
    assert parse_api_keys(b" #not a comment\n") == [b" #not a comment"]


@pytest.mark.parametrize(
    "key, why", [(b"k\r", "CRLF"), (b"k\x00x", "0x00"), (b"k ", "ends in whitespace"), (b"k\t", "ends in whitespace")]
)
def test_unsendable_keys(key, why):
    assert why in unsendable(key)


def test_sendable_keys():
    for key in (b"abc", b"  leading", b"in side", "ünï".encode()):
        assert unsendable(key) is None


def test_read_api_key(tmp_path):
    f = tmp_path / "keys"
    f.write_bytes(b"#c\n  first key\nsecond\n")
    assert read_api_key(str(f)) == "  first key"  # nothing stripped, as llama-server keeps it
    f.write_bytes(b"sk-1\r\nsk-2\r\n")
    with pytest.raises(ConfigError, match=r"Key 1 .* Windows \(CRLF\) line endings") as exc:
        read_api_key(str(f))
    assert "dos2unix" in exc.value.hint
    f.write_bytes(b"\xff\xfekey\n")
    with pytest.raises(ConfigError, match="is not UTF-8"):
        read_api_key(str(f))
    f.write_bytes(b"# nothing\n")
    assert read_api_key(str(f)) is None
    with pytest.raises(ConfigError, match="Cannot read the API key file"):
        read_api_key(str(tmp_path / "missing"))


def test_serve_refuses_a_crlf_key_file_with_exit_2(tmp_path, capsys):
    from llmtp.cli.main import run

    f = tmp_path / "keys"
    f.write_bytes(b"sk-1\r\n")
    f.chmod(0o600)
    with pytest.raises(SystemExit) as exc:
        run(["serve", "--dry-run", "--api-key-file", str(f), "--server", "/bin/true", "whatever"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "CRLF" in err and "Traceback" not in err


# --- the supervisor with a fake server whose generation endpoint refuses the key -----------------------


class RefusingProc:
    def __init__(self, spec):
        self.spec, self.pid, self.log_path, self.argv, self.stopped = spec, 1, "/tmp/x.log", [], False
        self.completions = 0

    def wait_ready(self, timeout, on_poll=None):
        pass

    def alive(self):
        return not self.stopped

    returncode = None

    def log_tail(self):
        return ""

    def failure_lines(self):
        return []

    def stop(self, grace=5):
        self.stopped = True

    def client(self, timeout=10):
        proc = self

        class Client:
            def __enter__(self):
                return self

            def __exit__(self, *a):
                pass

            def health(self, timeout=None):
                return 200

            def metrics(self):
                raise ConfigError("llama-server refused llmtp's API key (401 on /metrics)")

            def completion(self, *a, **kw):
                proc.completions += 1
                raise ConfigError("llama-server at http://x refused llmtp's API key (401 on /completion)")

        return Client()


def test_a_refused_probe_is_reported_once_and_never_restarts(caplog):
    procs: list[RefusingProc] = []

    def launch(spec):
        procs.append(RefusingProc(spec))
        return procs[-1]

    cfg = SupervisorConfig(
        tick_s=0.005,
        health_every_s=0.01,
        probe_every_s=0.01,
        policy=RestartPolicy(max_crashes=3, backoff_initial_s=0.0),
    )
    sup = Supervisor(LaunchSpec(model="m", port=1), launch, config=cfg)
    caplog.set_level("ERROR", logger="llmtp.serve")
    t = threading.Thread(target=sup.run, daemon=True)
    t.start()
    time.sleep(0.5)  # fifty probe periods
    sup.request_stop()
    t.join(5)
    assert len(procs) == 1 and sup.restarts == 0 and procs[0].completions == 1
    errors = [r.getMessage() for r in caplog.records if "refused llmtp's API key" in r.getMessage()]
    assert len(errors) == 1 and "generation probe disabled" in errors[0]
    assert sup.probe_refused is not None and sup.state is State.STOPPED


def test_http_client_maps_401_to_a_config_error():
    import httpx

    from llmtp.adapters.http import LlamaClient

    c = LlamaClient("http://127.0.0.1:1", "k")
    c._http = httpx.Client(
        base_url="http://t",
        transport=httpx.MockTransport(lambda req: httpx.Response(401, json={"error": {"message": "Invalid API Key"}})),
    )
    with pytest.raises(ConfigError, match="refused llmtp's API key"):
        c.completion("x", n_predict=1)
    c._http = httpx.Client(base_url="http://t", transport=httpx.MockTransport(lambda req: httpx.Response(500)))
    with pytest.raises(NetworkError):
        c.completion("x", n_predict=1)


# --- against the real llama-server -------------------------------------------------------------------


@pytest.mark.llama
def test_real_server_keeps_what_llmtp_keeps(llama_bin_dir, tiny_models, tmp_path):
    """llama-server with a CRLF key file refuses the stripped key (so stripping was wrong), and
    accepts exactly the key llmtp reads from an LF file, spaces and non-ASCII included."""
    import httpx
    from llama_server import llama_server

    from llmtp.adapters.http import LlamaClient

    crlf = tmp_path / "crlf"
    crlf.write_bytes(b"sk-test\r\n")
    with llama_server(
        llama_bin_dir, tiny_models["plain"], tmp_path / "a.log", extra=["--api-key-file", str(crlf)]
    ) as srv:
        r = httpx.post(
            srv.base_url + "/completion",
            json={"prompt": "a", "n_predict": 1},
            headers={"Authorization": "Bearer sk-test"},
            timeout=30,
        )
        assert r.status_code == 401
    with pytest.raises(ConfigError, match="CRLF"):
        read_api_key(str(crlf))

    lf = tmp_path / "lf"
    lf.write_bytes("# keys\n  sp ace-ünï\nother\n".encode())
    key = read_api_key(str(lf))
    with llama_server(
        llama_bin_dir, tiny_models["plain"], tmp_path / "b.log", extra=["--api-key-file", str(lf)]
    ) as srv:
        with LlamaClient(srv.base_url, key, timeout=30) as c:
            assert c.completion("a b", n_predict=1)["timings"]["predicted_n"] == 1
        with (
            LlamaClient(srv.base_url, key.strip(), timeout=30) as c,
            pytest.raises(ConfigError, match=r"refused llmtp's API key \(401 on /completion\)"),
        ):
            c.completion("a b", n_predict=1)


@pytest.mark.llama
def test_real_server_refusing_our_probe_is_not_a_wedge(llama_bin_dir, tiny_models, tmp_path, caplog):
    """The key file changed under a running server (the server holds the old key): the watchdog's
    generation probe gets 401, says so once, and the server keeps running, never restarted."""
    from llmtp.adapters.ports import free_port
    from llmtp.core.capabilities import Capabilities
    from llmtp.core.probe import parse_help
    from llmtp.services.serve.supervisor import make_launcher

    flags, enums = parse_help((Path(__file__).parent / "fixtures/llama/b11434-cpu/server-help.txt").read_text())
    caps = Capabilities(flags=flags, enums=enums)
    keys = tmp_path / "keys"
    keys.write_text("server-key\n")
    spec = LaunchSpec(
        model=str(tiny_models["plain"]), port=free_port(), ctx_size=512, parallel=1, threads=1, api_key_file=str(keys)
    )
    from llmtp.core.launch_plan import plan_of_spec

    launch = make_launcher(
        plan_of_spec(spec, caps, str(llama_bin_dir / "llama-server")), log_path=tmp_path / "s.log", api_key="edited-key"
    )
    cfg = SupervisorConfig(tick_s=0.02, health_every_s=0.1, probe_every_s=0.2, probe_timeout_s=30)
    sup = Supervisor(spec, launch, config=cfg)
    caplog.set_level("ERROR", logger="llmtp.serve")
    t = threading.Thread(target=sup.run, daemon=True)
    t.start()
    try:
        deadline = time.monotonic() + 60
        while sup.probe_refused is None and time.monotonic() < deadline and t.is_alive():
            time.sleep(0.05)
        assert sup.probe_refused is not None and "401 on /completion" in sup.probe_refused
        pid = sup.proc.pid
        time.sleep(1.5)  # several probe periods more
        assert sup.restarts == 0 and sup.proc.pid == pid and sup.state is State.READY
    finally:
        sup.request_stop()
        t.join(30)
    assert len([r for r in caplog.records if "refused llmtp's API key" in r.getMessage()]) == 1
