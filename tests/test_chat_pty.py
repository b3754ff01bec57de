"""`llmtp run MODEL` as a person uses it: a chat in a real pseudo-terminal against a real llama-server.
/? and /clear are llmtp's own (never sent to the model), Ctrl-C stops an answer and the chat goes on,
Ctrl-C at the prompt (or /bye) ends it."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import time

import pytest

from llmtp.adapters.ports import free_port
from llmtp.core.chat import chat_command

pytestmark = pytest.mark.llama


def _terminal_child() -> None:
    """In the child before exec: the pty is its controlling terminal, and SIGINT is at its default, as in a
    person's terminal (under a parent that ignores SIGINT, a shell's background job as CI may run, the child
    would inherit SIG_IGN and Ctrl-C would do nothing)."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Pty:
    """A child process on its own pseudo-terminal (its controlling terminal: \\x03 is a real Ctrl-C)."""

    def __init__(self, argv: list[str], env: dict[str, str], cols: int = 80):
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, cols, 0, 0))
        self.proc = subprocess.Popen(
            argv,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            start_new_session=True,
            preexec_fn=_terminal_child,
        )
        os.close(slave)
        self.out = ""

    def expect(self, text: str, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while text not in self.out:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {text!r} in:\n{self.out[-3000:]}")
            ready, _, _ = select.select([self.master], [], [], min(left, 1.0))
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # the child closed the terminal
                    chunk = b""
                if not chunk and self.proc.poll() is not None:
                    raise AssertionError(f"exited ({self.proc.returncode}) before {text!r}:\n{self.out[-3000:]}")
                self.out += chunk.decode("utf-8", "replace")
        return self.out

    def send(self, data: str) -> None:
        os.write(self.master, data.encode())

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        os.close(self.master)


def test_chat_commands_are_recognized():
    assert [chat_command(x) for x in ("/bye", "/?", "/clear", "/HELP", "/exit", "/nope", "hi", "//x", "")] == [
        "bye",
        "help",
        "clear",
        "help",
        "bye",
        "unknown",
        None,
        None,
        None,
    ]


def test_chat_in_a_terminal(llama_bin_dir, bench_models, llmtp_home):
    port = free_port()
    env = dict(os.environ, LLMTP_PORT=str(port), LLMTP_HOME=str(llmtp_home), TERM="xterm", COLUMNS="80")
    server = str(llama_bin_dir / "llama-server")
    model = str(bench_models["agree"])
    serve = subprocess.run(
        [sys.executable, "-m", "llmtp", "serve", model, "--server", server, "--port", str(port), "--ctx", "4096"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert serve.returncode == 0, serve.stderr
    chat = None
    try:
        chat = Pty(
            [sys.executable, "-m", "llmtp", "run", model, "--server", server, "--ctx", "4096", "--max-tokens", "3000"],
            env,
        )
        chat.expect("/? for help")
        chat.expect("> ")
        chat.send("/?\n")
        chat.expect("/clear: forget the conversation")
        chat.send("tell me everything\n")
        mark = len(chat.out)
        # a long answer streams; Ctrl-C stops it, the chat stays
        deadline = time.monotonic() + 60
        while len(chat.out) < mark + 40 and time.monotonic() < deadline:
            ready, _, _ = select.select([chat.master], [], [], 0.2)
            if ready:
                chat.out += os.read(chat.master, 65536).decode("utf-8", "replace")
        chat.send("\x03")
        chat.expect("(stopped; Ctrl-C at the prompt ends the chat)")
        assert chat.proc.poll() is None  # still chatting
        assert "tokens," not in chat.out[mark:]  # no stats line: the answer did not run to its end
        chat.send("/clear\n")
        chat.expect("(conversation cleared)")
        chat.send("/nope\n")
        chat.expect("unknown command /nope")
        chat.send("/bye\n")
        assert chat.proc.wait(120) == 0
        # Ctrl-C at the prompt ends a chat too
        chat.close()
        chat = Pty([sys.executable, "-m", "llmtp", "run", model, "--server", server, "--ctx", "4096"], env)
        chat.expect("> ")
        # as a person does, after the prompt is up: a SIGINT that lands between Python writing "> " and its
        # read() starting only sets Python's signal flag, and the read then blocks (CPython's input())
        time.sleep(0.5)
        chat.send("\x03")
        assert chat.proc.wait(120) == 0
        assert "Traceback" not in chat.out
        # the server is still there, idle: the stopped answer did not keep it generating
        import httpx

        # (llama-server notices the closed stream at its next token: on a loaded machine that can take a
        # moment, far less than the 3000-token answer would have run)
        deadline = time.monotonic() + 20
        while any(s.get("is_processing") for s in httpx.get(f"http://127.0.0.1:{port}/slots", timeout=10).json()):
            assert time.monotonic() < deadline, "the stopped answer kept the server generating"
            time.sleep(0.5)
    finally:
        if chat is not None:
            chat.close()
        subprocess.run([sys.executable, "-m", "llmtp", "stop", "--port", str(port)], env=env, timeout=60)
