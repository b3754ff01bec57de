"""API key files read exactly as llama-server reads --api-key-file, and which keys a client can send."""

from __future__ import annotations

# b11434 common/arg.cpp, the --api-key-file handler (the file is opened in text mode, which on
# POSIX translates nothing):
#     std::string key;
#     while (std::getline(key_file, key)) {
#         if (!key.empty() && key[0] != '#') {
#             params.api_keys.push_back(key);
#         }
#     }
# Lines end at '\n' alone and nothing is stripped: the '\r' of a CRLF file and any spaces stay in
# the key. The server compares the Authorization header (minus "Bearer ") byte for byte with them.


def parse_api_keys(data: bytes) -> list[bytes]:
    """Every key llama-server takes from this file content, in file order."""
    return [line for line in data.split(b"\n") if line and not line.startswith(b"#")]


def unsendable(key: bytes) -> str | None:
    """Why no HTTP client can send `key` so that llama-server sees these exact bytes (None: it can).

    A header value cannot hold CR, LF, NUL or other control bytes, and HTTP strips whitespace at its
    end, so such a key is accepted by the server yet matches no request."""
    if key.endswith(b"\r"):
        return (
            "its line ends in a carriage return: the file has Windows (CRLF) line endings, and "
            "llama-server keeps the \\r as part of the key"
        )
    bad = sorted({b for b in key if (b < 0x20 and b != 0x09) or b == 0x7F})
    if bad:
        return "it holds control character(s) " + ", ".join(f"0x{b:02x}" for b in bad)
    if key.endswith((b" ", b"\t")):
        return "it ends in whitespace, which HTTP strips from a header (llama-server keeps it in the key)"
    return None
