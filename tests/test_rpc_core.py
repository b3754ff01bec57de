"""core/rpc.py and the RPC pieces around it: addresses, exposure, the split (RPC first), worker argv,
the --rpc argv, the --rpc build plan, the doctor's worker check, and the supervisor's worker hooks."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from llmtp.core.capabilities import Capabilities
from llmtp.core.doctor import check_rpc_worker
from llmtp.core.launch import LaunchSpec
from llmtp.core.probe import parse_help, parse_list_devices
from llmtp.core.rpc import (
    Endpoint,
    check_exposure,
    is_loopback,
    missing_workers,
    parse_endpoint,
    parse_endpoints,
    plan_split,
    worker_argv,
)
from llmtp.errors import UsageError

FIXTURES = Path(__file__).parent / "fixtures/llama/b11434-cpu"


def test_parse_endpoints_ipv4_ipv6_and_order():
    assert parse_endpoints("127.0.0.1:50071, 127.0.0.1:50072") == [
        Endpoint("127.0.0.1", 50071),
        Endpoint("127.0.0.1", 50072),
    ]
    assert parse_endpoint("[::1]:50052") == Endpoint("::1", 50052)
    assert str(Endpoint("::1", 50052)) == "[::1]:50052"


@pytest.mark.parametrize(
    "bad", ["127.0.0.1", "127.0.0.1:", ":50052", "127.0.0.1:0", "127.0.0.1:70000", "127.0.0.1:5a", ","]
)
def test_bad_endpoints_are_usage_errors(bad):
    with pytest.raises(UsageError):
        parse_endpoints(bad)


def test_a_worker_listed_twice_is_refused():
    with pytest.raises(UsageError, match="listed twice"):
        parse_endpoints("127.0.0.1:50052,127.0.0.1:50052")


def test_exposure_loopback_is_silent_other_binds_need_trusted_network():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4") and not is_loopback("example.org")
    assert check_exposure("127.0.0.1", False) is None
    with pytest.raises(UsageError) as exc:
        check_exposure("0.0.0.0", False)
    assert "no authentication" in exc.value.message and "--trusted-network" in exc.value.hint
    warning = check_exposure("192.168.1.4", True)
    assert warning is not None and "no authentication" in warning


def test_worker_argv_uses_b11434_flags():
    assert worker_argv("w", host="127.0.0.1", port=50071) == ["w", "-H", "127.0.0.1", "-p", "50071"]
    assert worker_argv("w", host="127.0.0.1", port=1, threads=4, devices=["CPU"], cache=True) == [
        "w",
        "-H",
        "127.0.0.1",
        "-p",
        "1",
        "-t",
        "4",
        "-d",
        "CPU",
        "-c",
    ]


def test_rpc_devices_parse_and_split_rpc_first():
    # `llama-server --rpc 127.0.0.1:50071,127.0.0.1:50072 --list-devices` on a CUDA client, captured shape
    text = (
        "Available devices:\n  CUDA0: NVIDIA GeForce RTX 4060 Ti (16379 MiB, 14900 MiB free)\n"
        "  RPC0: 127.0.0.1:50071 (24105 MiB, 24105 MiB free)\n  RPC1: 127.0.0.1:50072 (24105 MiB, 20000 MiB free)\n"
    )
    devices = parse_list_devices(text)
    split = plan_split(devices)
    assert split.devices == ["RPC0", "RPC1", "CUDA0"]  # the output layer (last device) stays local
    assert split.shares == [24105, 20000, 14900]
    assert split.argv() == ["-dev", "RPC0,RPC1,CUDA0", "-ts", "24105,20000,14900"]
    wanted = [Endpoint("127.0.0.1", 50071), Endpoint("127.0.0.1", 50072), Endpoint("127.0.0.1", 50073)]
    assert missing_workers(wanted, devices) == [Endpoint("127.0.0.1", 50073)]


def test_split_refuses_to_guess_free_memory():
    devices = parse_list_devices("Available devices:\n  RPC0: 127.0.0.1:50071\n")
    with pytest.raises(UsageError, match="free memory"):
        plan_split(devices)


def test_attach_on_a_cpu_host_keeps_block_0_here():
    from llmtp.services.rpc.cluster import attach_workers

    devices = parse_list_devices(
        "Available devices:\n  RPC0: 127.0.0.1:50071 (100 MiB, 90 MiB free)\n"
        "  RPC1: 127.0.0.1:50072 (100 MiB, 30 MiB free)\n"
    )
    spec = LaunchSpec(model="m.gguf", port=8080)
    attach_workers(spec, [Endpoint("127.0.0.1", 50071), Endpoint("127.0.0.1", 50072)], devices, block_count=12)
    assert spec.rpc == ["127.0.0.1:50071", "127.0.0.1:50072"]
    assert (spec.devices, spec.tensor_split, spec.n_gpu_layers) == (["RPC0", "RPC1"], [90, 30], 12)


def _caps() -> Capabilities:
    return Capabilities(flags=parse_help((FIXTURES / "server-help.txt").read_text())[0])


def test_argv_puts_rpc_before_the_devices_it_registers():
    from llmtp.core.argv import build_server_argv

    spec = LaunchSpec(
        model="m.gguf", port=8080, n_gpu_layers=12, rpc=["127.0.0.1:50071"], devices=["RPC0"], tensor_split=[90]
    )
    argv = build_server_argv("llama-server", _caps(), spec)
    i = argv.index("--rpc")
    assert argv[i : i + 6] == ["--rpc", "127.0.0.1:50071", "-dev", "RPC0", "-ts", "90"]
    assert argv.index("-ngl") > i
    plain = build_server_argv("llama-server", _caps(), LaunchSpec(model="m.gguf", port=8080))
    assert "--rpc" not in plain and "-dev" not in plain and "-ts" not in plain


def test_rpc_build_plan_adds_the_backend_and_worker_without_touching_the_plain_hash():
    from llmtp.services.build.pipeline import inputs_hash, load_pin, plan
    from llmtp.services.build.request import BuildRequest

    pin = load_pin()
    plain = plan(BuildRequest(profile="cpu", native=False), None, pin)
    rpc = plan(BuildRequest(profile="cpu", native=False, rpc=True), None, pin)
    assert "GGML_RPC" not in plain.options and "ggml-rpc-server" not in plain.targets
    assert rpc.options["GGML_RPC"] == "ON" and rpc.targets[-1] == "ggml-rpc-server"
    assert inputs_hash("x", plain) != inputs_hash("x", rpc)
    with pytest.raises(UsageError, match="GGML_RPC=OFF"):
        plan(BuildRequest(profile="cpu", native=False, rpc=True, cmake_args=["GGML_RPC=OFF"]), None, pin)


def test_testbed_cpu_hash_is_unchanged_by_the_rpc_option(monkeypatch):
    from llmtp.services.build import pipeline as build_svc
    from llmtp.testbed.build import TESTBED_REQUEST, TESTBED_RPC_REQUEST, testbed_inputs_hash

    # A native build's options follow the host CPU (AMX flags add options): pin a CPU without any, so the
    # figure is the same on every machine (it was pinned on an AMX Xeon and failed on an EPYC).
    monkeypatch.setattr(build_svc, "_cpu_flags", lambda hw, native: [])
    assert TESTBED_REQUEST.rpc is False
    # the CPU test bed's inputs hash before RPC support existed (b11434 pypi, profile cpu, native; computed
    # with the code of 6e9fda6 on a CPU without AMX)
    assert testbed_inputs_hash() == "9bea93617dfd71f2218a54541b69b28d16ce314b6e7e2a593b081a11af9135aa"
    assert testbed_inputs_hash(TESTBED_RPC_REQUEST) != testbed_inputs_hash()


def test_doctor_worker_check():
    assert check_rpc_worker("h:1", "connection refused", None, 11434, None).status == "fail"
    mismatch = check_rpc_worker("h:1", None, 11433, 11434, None)
    assert mismatch.status == "fail" and "11433" in mismatch.detail
    assert check_rpc_worker("h:1", None, 11434, 11434, None).status == "ok"
    assert "unknown" in check_rpc_worker("h:1", None, None, 11434, None).detail
    assert check_rpc_worker("h:1", None, 11434, 11434, "192.168.1.4").status == "warn"


def test_supervisor_restarts_when_watch_reports_a_dead_worker_and_waits_for_it():
    from test_supervisor_fake import FAST, FakeProc, _run_until

    from llmtp.core.supervisor import State
    from llmtp.services.serve.supervisor import Supervisor, SupervisorConfig

    worker_up = threading.Event()
    worker_up.set()
    waits, messages, launches = [], [], []

    def before_start(stop):
        waits.append(worker_up.is_set())
        while not worker_up.is_set() and not stop.is_set():
            time.sleep(0.01)

    def watch():
        return None if worker_up.is_set() else "RPC worker 127.0.0.1:50072 stopped answering (connection refused)"

    def launch(spec):
        launches.append(spec)
        return FakeProc(spec)

    sup = Supervisor(
        LaunchSpec(model="m", port=1),
        launch,
        config=SupervisorConfig(**FAST),
        watch=watch,
        before_start=before_start,
        on_event=lambda s, m: messages.append(m),
    )

    def kill_then_revive():
        if len(launches) == 1 and sup.state is State.READY:
            worker_up.clear()
        if any("50072 stopped answering" in m for m in messages):
            worker_up.set()
        return len(launches) == 2 and sup.state is State.READY

    _run_until(sup, kill_then_revive)
    assert len(launches) == 2 and sup.restarts == 1
    assert any(m.startswith("RPC worker 127.0.0.1:50072 stopped answering") for m in messages)


def test_worker_stop_refuses_a_port_that_a_llama_server_holds(tmp_path):
    from llmtp.services.rpc.worker import stop_workers
    from llmtp.services.stores import serve_records as st

    record = st.ServeState(llmtp_pid=1, host="127.0.0.1", port=8080, model="m.gguf", log_path="x")
    st.state_path(tmp_path, 8080).write_text(record.model_dump_json())
    with pytest.raises(UsageError, match="not an RPC worker") as exc:
        stop_workers(tmp_path, 8080)
    assert exc.value.hint == "Stop it with `llmtp stop --port 8080`."
    assert st.state_path(tmp_path, 8080).exists()  # nothing touched


def test_worker_mem_is_refused_on_a_build_without_it(tmp_path):
    from types import SimpleNamespace

    from llmtp.services.rpc.worker import WorkerRequest, prepare_worker

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ggml-rpc-server").write_text("")
    build = SimpleNamespace(id="b11434-cpu-x", bin_dir=bin_dir, manifest=SimpleNamespace(capabilities=Capabilities()))
    with pytest.raises(UsageError, match="--mem needs a ggml-rpc-server with -m/--mem; build b11434-cpu-x"):
        prepare_worker(None, WorkerRequest(mem=1024), current_build=lambda s: build)
    no_worker = SimpleNamespace(id="b1", bin_dir=tmp_path, manifest=build.manifest)
    from llmtp.errors import BuildError

    with pytest.raises(BuildError, match="no RPC worker"):
        prepare_worker(None, WorkerRequest(), current_build=lambda s: no_worker)


def test_network_enters_the_roofline_as_a_lower_bound_on_time():
    from llmtp.core.rpc import Link, decode_bound, network_s_per_token

    links = [Link(rtt_s=0.001, bytes_per_s=4096 * 1000), Link(rtt_s=0.002, bytes_per_s=4096 * 1000)]
    # hidden 1024 -> 4 KiB of f32 activations per boundary; host->w1, w1->w2 (w2's link), w2->host
    assert network_s_per_token(links, 1024) == pytest.approx(0.001 + 0.001 + 0.002 + 0.001 + 0.002 + 0.001)
    assert network_s_per_token(links, None) is None and network_s_per_token([], 1024) is None
    assert decode_bound(100.0, 0.008) == pytest.approx(1 / (0.01 + 0.008), abs=0.05)
    assert decode_bound(None, 0.008) is None and decode_bound(100.0, None) is None


def test_rpc_tensor_is_packed_like_b11434():
    from llmtp.adapters.rpc_wire import rpc_tensor

    raw = rpc_tensor(buffer=0x1000, data=0x2000, nbytes=64)
    assert len(raw) == 296  # sizeof(rpc_tensor) with #pragma pack(1), GGML_MAX_SRC 10, GGML_MAX_NAME 64
    assert raw[12:20] == (0x1000).to_bytes(8, "little")  # buffer after id (8) and type (4)
    assert raw[220:228] == (0x2000).to_bytes(8, "little")  # data after src[10], view_src, view_offs


def test_plan_rpc_gives_one_answer_for_memory():
    """`plan --rpc` shows memory as the launch splits it (issue 22: `memory` put every weight on the CPU while
    `rpc.devices` put half on each worker): weights by each device's share, KV and the MTP draft following
    the layers, compute and margin on this host; nothing lost or invented in the split."""
    from llmtp.core.plan_types import MemoryBreakdown
    from llmtp.core.rpc import split_memory

    planned = [
        MemoryBreakdown(
            device="CPU (system RAM)",
            weights=1000,
            kv_cache=100,
            recurrent_state=10,
            mtp_draft=20,
            compute=50,
            margin=5,
        )
    ]
    devices = [
        {"id": "RPC0", "weights_share": 0.5, "weights_bytes": 500},
        {"id": "RPC1", "weights_share": 0.5, "weights_bytes": 500},
        {"id": "CPU", "weights_share": None, "weights_bytes": None, "holds": "token embeddings, block 0"},
    ]
    rows = {r.device: r for r in split_memory(planned, devices)}
    assert list(rows) == ["RPC0", "RPC1", "CPU"]
    assert (rows["RPC0"].weights, rows["RPC0"].kv_cache, rows["RPC0"].mtp_draft, rows["RPC0"].compute) == (
        500,
        50,
        10,
        0,
    )
    assert (rows["CPU"].weights, rows["CPU"].compute, rows["CPU"].margin) == (0, 50, 5)
    assert sum(r.total for r in rows.values()) == planned[0].total
    assert split_memory(planned, [{"id": "CPU", "weights_share": None}]) == planned  # nothing split
