"""NVML adapter on a fake pynvml: two GPUs, a driver without the v2 memory API, no driver at all."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from llmtp.adapters import nvml as nvml_adapter
from llmtp.adapters.nvml import read_nvidia_gpus

FIXTURES = Path(__file__).parent / "fixtures" / "nvml"


class NVMLError(Exception):
    def __init__(self, value: int):
        super().__init__(
            {13: "Function Not Found", 12: "NVML Shared Library Not Found", 3: "Not Supported", 9: "Driver Not Loaded"}[
                value
            ]
        )
        self.value = value


class NVMLError_FunctionNotFound(NVMLError):
    def __init__(self):
        super().__init__(13)


def fake_pynvml(spec: dict, init_error: int | None = None) -> SimpleNamespace:
    """A stand-in exposing the pynvml functions llmtp calls, answering from a fixture."""
    calls: list[str] = []
    devices = spec["devices"]

    def init():
        calls.append("init")
        if init_error is not None:
            raise NVMLError(init_error)

    def memory_info(handle, version=None):
        d = devices[handle]
        if version is not None:
            calls.append("memory_v2")
            if not spec["has_memory_v2"]:
                raise NVMLError_FunctionNotFound()
            assert version == m.nvmlMemory_v2
            return SimpleNamespace(
                version=version, total=d["total"], reserved=d["reserved"], free=d["free"], used=d["total"] - d["free"]
            )
        calls.append("memory_v1")
        return SimpleNamespace(total=d["total"], free=d["free"], used=d["total"] - d["free"])

    def field(key):
        def get(handle, *args):
            value = devices[handle][key]
            if value is None:
                raise NVMLError(3)
            return tuple(value) if isinstance(value, list) else value

        return get

    def max_clock(handle, clock_type):
        assert clock_type == m.NVML_CLOCK_MEM
        return field("max_mem_clock")(handle)

    m = SimpleNamespace(
        NVMLError=NVMLError,
        NVMLError_FunctionNotFound=NVMLError_FunctionNotFound,
        NVML_CLOCK_MEM=2,
        nvmlMemory_v2=0x02000028,
        calls=calls,
        nvmlInit=init,
        nvmlShutdown=lambda: calls.append("shutdown"),
        nvmlSystemGetDriverVersion=lambda: spec["driver_version"],
        nvmlSystemGetCudaDriverVersion_v2=lambda: spec["cuda_driver_version"],
        nvmlDeviceGetCount=lambda: len(devices),
        nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetName=field("name"),
        nvmlDeviceGetMemoryInfo=memory_info,
        nvmlDeviceGetCudaComputeCapability=field("cc"),
        nvmlDeviceGetPciInfo=lambda h: SimpleNamespace(busId=devices[h]["bus_id"].encode()),
        nvmlDeviceGetMaxPcieLinkGeneration=field("pcie_gen"),
        nvmlDeviceGetMaxPcieLinkWidth=field("pcie_width"),
        nvmlDeviceGetMemoryBusWidth=field("bus_width"),
        nvmlDeviceGetMaxClockInfo=max_clock,
    )
    return m


def load(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def test_two_gpus_listed_individually_with_v2_memory():
    nvml = fake_pynvml(load("two-gpus-r550.json"))
    gpus, notes = read_nvidia_gpus(nvml)
    assert notes == []
    assert [g.model_dump() for g in gpus] == [
        {
            "index": 0,
            "vendor": "nvidia",
            "name": "NVIDIA GeForce RTX 4090",
            "vram_total_bytes": 25757220864,
            "vram_free_bytes": 25048186880,
            "unified_memory": False,
            "gtt_total_bytes": None,
            "compute_capability": "8.9",
            "cuda_arch": "89",
            "gfx_target": None,
            "driver_version": "550.54.14",
            "cuda_driver_version": "12.4",
            "pcie_generation": 4,
            "pcie_width": 16,
            "memory_bandwidth_gbps": 1008.1,
            "pci_bus_id": "0000:01:00.0",
            "gpu_cores": None,
            "source": "nvml",
        },
        {
            "index": 1,
            "vendor": "nvidia",
            "name": "NVIDIA GeForce RTX 3060",
            "vram_total_bytes": 12884901888,
            "vram_free_bytes": 12470452224,
            "unified_memory": False,
            "gtt_total_bytes": None,
            "compute_capability": "8.6",
            "cuda_arch": "86",
            "gfx_target": None,
            "driver_version": "550.54.14",
            "cuda_driver_version": "12.4",
            "pcie_generation": 4,
            "pcie_width": 16,
            "memory_bandwidth_gbps": 360.0,
            "pci_bus_id": "0000:02:00.0",
            "gpu_cores": None,
            "source": "nvml",
        },
    ]
    assert nvml.calls == ["init", "memory_v2", "memory_v2", "shutdown"]


def test_driver_without_v2_memory_api_falls_back_to_v1():
    nvml = fake_pynvml(load("one-gpu-r470-no-v2.json"))
    gpus, notes = read_nvidia_gpus(nvml)
    assert notes == []
    assert nvml.calls == ["init", "memory_v2", "memory_v1", "shutdown"]
    (gpu,) = gpus
    assert (gpu.name, gpu.vram_total_bytes, gpu.vram_free_bytes) == (
        "NVIDIA GeForce GTX 1080 Ti",
        11811160064,
        11546329088,
    )
    assert (gpu.compute_capability, gpu.cuda_arch, gpu.cuda_driver_version) == ("6.1", "61", "11.4")
    # bus width unsupported -> bandwidth unknown, never estimated
    assert gpu.memory_bandwidth_gbps is None
    assert (gpu.pcie_generation, gpu.pcie_width, gpu.pci_bus_id) == (3, 16, "0000:65:00.0")


def test_pynvml_without_version_argument_falls_back_to_v1():
    spec = load("two-gpus-r550.json")
    nvml = fake_pynvml(spec)
    v1 = nvml.nvmlDeviceGetMemoryInfo
    nvml.nvmlDeviceGetMemoryInfo = lambda handle: v1(handle)  # an old pynvml: no `version` keyword
    gpus, _ = read_nvidia_gpus(nvml)
    assert [g.vram_total_bytes for g in gpus] == [25757220864, 12884901888]


def test_no_driver_means_no_nvidia_gpus_and_a_note():
    nvml = fake_pynvml(load("two-gpus-r550.json"), init_error=9)
    gpus, notes = read_nvidia_gpus(nvml)
    assert gpus == []
    assert notes == ["NVIDIA: no GPU driver answered (NVML: Driver Not Loaded)."]
    assert nvml.calls == ["init"]


def test_memory_not_reported_is_none_with_a_note():
    spec = load("one-gpu-r470-no-v2.json")
    nvml = fake_pynvml(spec)

    def no_memory(handle, version=None):
        raise NVMLError(3)

    nvml.nvmlDeviceGetMemoryInfo = no_memory
    gpus, notes = read_nvidia_gpus(nvml)
    assert (gpus[0].vram_total_bytes, gpus[0].vram_free_bytes) == (None, None)
    assert notes == ["NVIDIA GPU 0: NVML does not report its memory."]


def test_missing_pynvml_package(monkeypatch):
    monkeypatch.setattr(nvml_adapter, "load_pynvml", lambda: None)
    assert read_nvidia_gpus() == (
        [],
        ["NVIDIA: the nvidia-ml-py package is not installed; NVIDIA GPUs were not looked for."],
    )


def test_real_pynvml_on_a_machine_without_driver_does_not_crash():
    gpus, notes = read_nvidia_gpus()
    # On a GPU machine this lists real GPUs; elsewhere it must be a clean note, never an exception.
    assert gpus or (len(notes) == 1 and notes[0].startswith("NVIDIA:"))


def test_one_unreadable_gpu_does_not_hide_the_others():
    nvml = fake_pynvml(load("two-gpus-r550.json"))

    def handle(i):
        if i == 0:
            raise NVMLError(9)
        return i

    nvml.nvmlDeviceGetHandleByIndex = handle
    gpus, notes = read_nvidia_gpus(nvml)
    assert [g.name for g in gpus] == ["NVIDIA GeForce RTX 3060"]
    assert notes == ["NVIDIA GPU 0: NVML cannot open it (Driver Not Loaded)."]


def test_the_fake_matches_the_real_pynvml_api():
    """Every name the fake stands in for exists in the installed nvidia-ml-py, so the adapter's calls are real."""
    import inspect

    import pynvml

    fake = fake_pynvml(load("two-gpus-r550.json"))
    missing = [name for name in vars(fake) if name != "calls" and not hasattr(pynvml, name)]
    assert missing == []
    assert "version" in inspect.signature(pynvml.nvmlDeviceGetMemoryInfo).parameters
    assert issubclass(pynvml.NVMLError_FunctionNotFound, pynvml.NVMLError)
    assert (pynvml.nvmlMemory_v2, pynvml.NVML_CLOCK_MEM) == (fake.nvmlMemory_v2, fake.NVML_CLOCK_MEM)
