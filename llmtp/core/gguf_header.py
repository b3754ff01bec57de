"""Parsing a GGUF header (key/values + tensor table) from bytes, without the tensor data.

A planner can fetch only the first few MB of a remote GGUF; gguf.GGUFReader needs the whole file
(it maps every tensor's data), so this reads the layout itself. Format: ggml docs/gguf.md (v2/v3):
magic "GGUF", u32 version, u64 tensor_count, u64 kv_count, kv_count x (string key, u32 type, value),
tensor_count x (string name, u32 n_dims, n_dims x u64 dims, u32 ggml type, u64 offset); strings are
u64 length + UTF-8 bytes; tensor data starts at the next multiple of `general.alignment` (32).
"""

from __future__ import annotations

import struct
from typing import Any

from pydantic import BaseModel, Field

from llmtp.core.gguf_meta import TensorInfo
from llmtp.core.gguf_sizes import row_bytes

GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
MAX_ARRAY_ITEMS = 4096  # longer arrays (token lists, merges, scores) are skipped, not decoded

# GGUF value types: id -> struct format of one scalar (8: string, 9: array handled apart).
_SCALARS: dict[int, str] = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9


class GGUFHeaderError(ValueError):
    """The bytes are not a GGUF header this parser understands."""


class GGUFTruncated(GGUFHeaderError):
    """The bytes end inside the header: read (or fetch) more of the file and parse again."""


class RawTensor(BaseModel):
    name: str
    dims: list[int]  # ggml order (ne0 first), as stored
    type_id: int  # ggml type id (gguf.constants.GGMLQuantizationType)
    offset: int  # relative to the start of the data region


class GGUFHeader(BaseModel):
    version: int
    kv: dict[str, Any] = Field(default_factory=dict)
    tensors: list[RawTensor] = Field(default_factory=list)
    alignment: int = DEFAULT_ALIGNMENT
    header_bytes: int  # where the header ends (before padding)
    data_offset: int  # where tensor data starts in the file

    @property
    def data_bytes(self) -> int | None:
        """Bytes the tensor data region needs (end of the last tensor); None when a type is unknown."""
        end = 0
        for raw in self.tensors:
            size = _tensor_bytes(raw)
            if size is None:
                return None
            end = max(end, raw.offset + size)
        return end


class _Cursor:
    def __init__(self, data: bytes, endian: str) -> None:
        self.data = memoryview(data)
        self.pos = 0
        self.endian = endian

    def take(self, n: int) -> memoryview:
        if self.pos + n > len(self.data):
            raise GGUFTruncated(f"GGUF header continues past byte {len(self.data)} (needs at least {self.pos + n})")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def scalar(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        return struct.unpack(self.endian + fmt, self.take(size))[0]

    def string(self) -> str:
        n = self.scalar("Q")
        if n > 1 << 30:
            raise GGUFHeaderError(f"implausible string length {n} at byte {self.pos - 8}")
        try:
            return bytes(self.take(n)).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise GGUFHeaderError(f"string at byte {self.pos - n} is not UTF-8") from exc

    def value(self, vtype: int) -> Any:
        if vtype in _SCALARS:
            return self.scalar(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            item_type = self.scalar("I")
            count = self.scalar("Q")
            if count > MAX_ARRAY_ITEMS:
                self.skip_array(item_type, count)
                return _SKIPPED
            return [self.value(item_type) for _ in range(count)]
        raise GGUFHeaderError(f"unknown GGUF value type {vtype} at byte {self.pos - 4}")

    def skip_array(self, item_type: int, count: int) -> None:
        if item_type in _SCALARS:
            self.take(struct.calcsize(_SCALARS[item_type]) * count)
        elif item_type == _STRING:
            for _ in range(count):
                self.take(self.scalar("Q"))
        else:
            for _ in range(count):
                self.value(item_type)


_SKIPPED = object()  # marker: an array too long to decode (dropped from kv, never guessed)


def parse_gguf_header(data: bytes) -> GGUFHeader:
    """Parse a GGUF header from the first bytes of a file (the tensor data may be absent).

    Raises GGUFTruncated when `data` ends inside the header, GGUFHeaderError when it is not GGUF.
    """
    if len(data) < 8:
        if GGUF_MAGIC.startswith(bytes(data[:4])):
            raise GGUFTruncated(f"GGUF header needs more than {len(data)} bytes")
        raise GGUFHeaderError(f"not a GGUF file (starts with {bytes(data[:4])!r})")
    if bytes(data[:4]) != GGUF_MAGIC:
        raise GGUFHeaderError(f"not a GGUF file (starts with {bytes(data[:4])!r})")
    # The version is small: read little-endian first, and if it looks byte-swapped the file is big-endian.
    version = struct.unpack("<I", data[4:8])[0]
    endian = "<"
    if version & 0xFFFF == 0 and version:
        endian, version = ">", struct.unpack(">I", data[4:8])[0]
    if version not in (2, 3):
        raise GGUFHeaderError(f"unsupported GGUF version {version} (only v2 and v3 are read)")
    cur = _Cursor(data, endian)
    cur.pos = 8
    n_tensors = cur.scalar("Q")
    n_kv = cur.scalar("Q")
    kv: dict[str, Any] = {}
    for _ in range(n_kv):
        key = cur.string()
        value = cur.value(cur.scalar("I"))
        if value is not _SKIPPED:
            kv[key] = value
    tensors: list[RawTensor] = []
    for _ in range(n_tensors):
        name = cur.string()
        n_dims = cur.scalar("I")
        if n_dims > 8:
            raise GGUFHeaderError(f"tensor {name!r} has {n_dims} dimensions")
        dims = [cur.scalar("Q") for _ in range(n_dims)]
        tensors.append(RawTensor(name=name, dims=dims, type_id=cur.scalar("I"), offset=cur.scalar("Q")))
    alignment = int(kv.get("general.alignment", DEFAULT_ALIGNMENT)) or DEFAULT_ALIGNMENT
    end = cur.pos
    return GGUFHeader(
        version=version,
        kv=kv,
        tensors=tensors,
        alignment=alignment,
        header_bytes=end,
        data_offset=(end + alignment - 1) // alignment * alignment,
    )


def ggml_type_name(type_id: int) -> str | None:
    """ggml type id -> name ("Q4_K", "F32", ...); None for an id the gguf package does not know."""
    from gguf.constants import GGMLQuantizationType

    try:
        return GGMLQuantizationType(type_id).name
    except ValueError:
        return None


def _tensor_bytes(t: RawTensor) -> int | None:
    name = ggml_type_name(t.type_id)
    n = 1
    for d in t.dims:
        n *= d
    return row_bytes(name, n) if name else None


def tensor_infos(header: GGUFHeader) -> list[TensorInfo]:
    """The tensor table as TensorInfo (bytes computed from type + shape); unknown types are dropped."""
    out: list[TensorInfo] = []
    for t in header.tensors:
        name, size = ggml_type_name(t.type_id), _tensor_bytes(t)
        if name is not None and size is not None:
            out.append(TensorInfo(name=t.name, shape=list(t.dims), type=name, n_bytes=size))
    return out


def read_kv_prefix(data: bytes) -> tuple[dict[str, Any], bool]:
    """The key/values wholly inside the first bytes of a GGUF, and whether all of them were.

    For a remote file read by HTTP range: `{arch}.nextn_predict_layers` usually sits before the long
    tokenizer arrays, so a first small read answers; (kv, False) says to read more when it does not.
    Raises GGUFHeaderError when the bytes are not GGUF.
    """
    try:
        return parse_gguf_header(data).kv, True
    except GGUFTruncated:
        pass
    if len(data) < 24:
        return {}, False
    version = struct.unpack("<I", data[4:8])[0]
    endian = ">" if version & 0xFFFF == 0 and version else "<"
    cur = _Cursor(data, endian)
    cur.pos = 8
    cur.scalar("Q")  # tensor count
    n_kv = cur.scalar("Q")
    kv: dict[str, Any] = {}
    try:
        for _ in range(n_kv):
            key = cur.string()
            value = cur.value(cur.scalar("I"))
            if value is not _SKIPPED:
                kv[key] = value
    except GGUFTruncated:
        return kv, False
    return kv, True  # every key/value read; only the tensor table ran past the bytes
