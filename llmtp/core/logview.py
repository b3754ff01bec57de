"""`llmtp logs` without --raw, pure part: from llama-server's log keep errors, warnings, starts and one
line per request, each with an absolute time.

llama-server (b11434, common/log.cpp) stamps each line with the time since it started and a level:
  0.00.005.592 E gguf_init_from_file: failed to open GGUF file '/nonexist.gguf' (No such file or directory)
  0.03.235.955 I slot print_timing: id  0 | task 0 |        eval time =     161.72 ms /    32 tokens (
      5.22 ms per token,   191.69 tokens per second)   [one line in the log, wrapped here]
(minutes.seconds.milliseconds.microseconds), and continues a multi-line message on lines without a stamp
(a tab-indented sampler dump). llmtp writes a line before each start (adapters/spawn.py, START_MARK):
  llmtp: llama-server started at 1765100000.123456
which anchors the relative stamps of that run to the wall clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

START_MARK = "llmtp: llama-server started at "

_STAMP = re.compile(r"^\s*(\d+)\.(\d{2})\.(\d{3})\.(\d{3}) ([IWEDT]) (.*)$")
_TIMING = re.compile(
    r"print_timing: id\s+\d+ \| task (?P<task>\d+) \|\s*(?P<what>prompt eval time|eval time) =\s+"
    r"(?P<ms>[\d.]+) ms /\s*(?P<n>\d+) tokens.*?(?P<tps>[\d.]+|inf|nan) tokens per second"
)
_DRAFT = re.compile(
    r"print_timing: id\s+\d+ \| task (?P<task>\d+) \| draft acceptance = [\d.]+ "
    r"\(\s*(?P<acc>\d+) accepted /\s*(?P<gen>\d+) generated\)"
)
_RELEASE = re.compile(r"slot\s+release: id\s+\d+ \| task (?P<task>\d+) \|")
_TROUBLE = re.compile(r"error|fail|abort|assert|terminate|fault|exception|killed|illegal", re.I)
_CHILD = re.compile(r"^\[(\d+)\] (.*)$")  # a router's child (llama-server with no model): its port, its own line
_SPAWN = re.compile(r"spawning server instance with name=(\S+) on port (\d+)")
_EXITED = re.compile(r"instance name=(\S+) exited with status (-?\d+)")
_KEEP_INFO = ("llama_server: model loaded", "llama_server: listening on", "cleaning up before exit")


@dataclass(frozen=True)
class Shown:
    at: float | None  # wall clock (epoch seconds); None before any start mark (an older log)
    level: str  # "error", "warning", "info", "request"
    text: str


class LogView:
    """Feed it lines in order (a whole file, then what `-f` reads); it returns the lines to show."""

    def __init__(self) -> None:
        self.base: float | None = None  # wall clock of the current run's start
        self._request: dict = {}
        self._stamped = False  # a stamped line was seen in this run
        self._quoted = False  # an unstamped line continues a quoted value
        self._children: dict[str, tuple[str, LogView]] = {}  # a router's: port -> (model name, its view)

    def only(self, name: str):  # noqa: ANN201 - Shown -> bool
        """A filter for the lines of one model of a router (its digest lines carry its name)."""
        return lambda shown: shown.text.startswith(f"{name}: ")

    def raw_only(self, name: str):  # noqa: ANN201 - str -> bool
        """A filter for the raw lines of one model's llama-server (`[PORT] ...`, the port the router gave it);
        call it on each line in order, after or before feed: it tracks the router's spawn lines itself."""
        ports: set[str] = set()

        def keep(line: str) -> bool:
            spawn = _SPAWN.search(line)
            if spawn is not None and spawn.group(1) == name:
                ports.add(spawn.group(2))
            child = _CHILD.match(line)
            return child is not None and child.group(1) in ports

        return keep

    def _child(self, port: str, text: str) -> list[Shown]:
        """A router child's line (`[PORT] ...`, stamped from the child's own start): shown with its model's name."""
        name, view = self._children.setdefault(port, (f"port {port}", LogView()))
        return [Shown(s.at, s.level, f"{name}: {s.text}") for s in view.feed(text)]

    def _at(self, rel: float) -> float | None:
        return None if self.base is None else self.base + rel

    def feed(self, line: str) -> list[Shown]:
        line = line.rstrip("\n")
        if line.startswith(START_MARK):
            try:
                self.base = float(line[len(START_MARK) :].split()[0])
            except (ValueError, IndexError):
                self.base = None
            self._request, self._stamped, self._quoted = {}, False, False
            return [Shown(self.base, "info", "llama-server started")]
        child = _CHILD.match(line)
        if child is not None:
            return self._child(*child.groups())
        m = _STAMP.match(line)
        if m is None:
            if self._quoted:  # inside a quoted multi-line value (the chat template's example)
                self._quoted = line.count("'") % 2 == 0
                return []
            if not line.strip() or line.startswith(("\t", " ")):
                return []  # a continuation (the sampler dump): part of a line already judged
            # unstamped output of its own: argument errors before logging starts, an abort, a crash
            if not self._stamped or _TROUBLE.search(line):
                return [Shown(None, "error", line)]
            return []
        self._stamped = True
        mins, secs, ms, us, level, text = m.groups()
        self._quoted = text.count("'") % 2 == 1
        at = self._at(int(mins) * 60 + int(secs) + int(ms) / 1e3 + int(us) / 1e6)
        if level == "E":
            return [Shown(at, "error", text)]
        if level == "W":
            return [Shown(at, "warning", text)]
        spawn = _SPAWN.search(text)
        if spawn is not None:  # the router starts a model's llama-server: its stamps count from here
            view = LogView()
            view.base = at
            self._children[spawn.group(2)] = (spawn.group(1), view)
            return [Shown(at, "info", f"{spawn.group(1)}: loading (llama-server on port {spawn.group(2)})")]
        exited = _EXITED.search(text)
        if exited is not None:
            name, code = exited.groups()
            return [Shown(at, "info" if code == "0" else "warning", f"{name}: llama-server exited with status {code}")]
        if any(k in text for k in _KEEP_INFO):
            return [Shown(at, "info", text.split(": ", 1)[-1] if "llama_server:" in text else text)]
        return self._requests(at, text)

    def _requests(self, at: float | None, text: str) -> list[Shown]:
        t = _TIMING.search(text)
        if t:
            key = "prompt" if t.group("what").startswith("prompt") else "eval"
            self._request[key] = (int(t.group("n")), t.group("tps"))
            self._request["task"] = t.group("task")
            return []
        d = _DRAFT.search(text)
        if d:
            self._request["draft"] = (int(d.group("acc")), int(d.group("gen")))
            return []
        r = _RELEASE.search(text)
        if r and self._request.get("task") == r.group("task"):
            req, self._request = self._request, {}
            return [Shown(at, "request", request_line(req))]
        return []


def request_line(req: dict) -> str:
    """`request 6: prompt 9 tokens, 32 tokens at 191.7 tok/s, MTP 23/23 accepted`."""
    parts = [f"request {req.get('task', '?')}:"]
    if "prompt" in req:
        parts.append(f"prompt {req['prompt'][0]} tokens,")
    if "eval" in req:
        n, tps = req["eval"]
        parts.append(f"{n} tokens at {float(tps):.1f} tok/s" if tps not in ("inf", "nan") and n else f"{n} tokens")
    if "draft" in req:
        acc, gen = req["draft"]
        parts.append(f"(MTP {acc}/{gen} drafts accepted)")
    return " ".join(parts).rstrip(",")


def view(lines: list[str]) -> list[Shown]:
    v = LogView()
    return [s for line in lines for s in v.feed(line)]
