"""A real systemd for the `systemd` test tier: a private `systemd --user` manager (user units) and a
systemd-nspawn container booting a cached Debian root (system units).

The rules that keep the host safe (the recipe in docs/testing.md): no manager ever runs on the host's own
root file system and cgroups. Each one runs in cgroups of its own in every hierarchy (children of this
process's cgroups, cpuset left alone), in a private mount namespace with a tmpfs on /run/systemd; the system
manager only inside a container with its own root, booted on a throw-away overlay so the cached root is
never written. Everything started is stopped by PID, then its cgroups are emptied and removed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOTFS_SUITE = "bookworm"
ROOTFS_MIRROR = "http://deb.debian.org/debian"
# libgomp1: llama.cpp's CPU backend links OpenMP's runtime, which minbase lacks.
ROOTFS_PACKAGES = "systemd,dbus,python3,libgomp1"
SYSTEMD = "/lib/systemd/systemd"


# --- can it run here ------------------------------------------------------------------------------


def user_manager_unavailable() -> str | None:
    """Why a private user manager cannot run here, or None."""
    if not os.path.exists("/proc/self/cgroup") or os.uname().sysname != "Linux":
        return "needs Linux"
    if os.geteuid() != 0:
        return "needs root (a dedicated cgroup and a private mount namespace for the manager)"
    for tool in ("unshare", "systemctl"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not os.access(SYSTEMD, os.X_OK):
        return f"no systemd binary at {SYSTEMD}"
    if not own_cgroups():
        return "no writable cgroup hierarchy found in /proc/self/mountinfo"
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"], capture_output=True, text=True, timeout=30
    )
    if probe.returncode != 0:
        return f"no mount namespaces here: `unshare --mount true` said {probe.stderr.strip()[:200]!r}"
    return None


def container_unavailable() -> str | None:
    """Why a systemd-nspawn container cannot boot here, or None."""
    reason = user_manager_unavailable()
    if reason:
        return reason
    for tool in ("systemd-nspawn", "debootstrap", "nsenter"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install systemd-container debootstrap)"
    return None


# --- cgroups --------------------------------------------------------------------------------------


def own_cgroups() -> dict[Path, str]:
    """Mount point -> this process's cgroup path in it, for every mounted hierarchy but cpuset (whose
    empty cpus/mems would refuse the move)."""
    mounts: dict[str, Path] = {}  # "memory", "name=systemd", "" (cgroup2) -> mount point
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fstype, _, opts = (right.split() + ["", "", ""])[:3]
        point = Path(left.split()[4])
        if fstype == "cgroup2":
            mounts[""] = point
        elif fstype == "cgroup":
            for opt in opts.split(","):
                if opt not in ("rw", "ro") and not opt.startswith(("relatime", "nosuid", "nodev", "noexec")):
                    mounts[opt] = point
    out: dict[Path, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        keys = names.split(",") if names else [""]
        if "cpuset" in keys:
            continue
        point = next((mounts[k] for k in keys if k in mounts), None)
        if point is not None and os.access(point, os.W_OK):
            out[point] = path
    return out


@dataclass
class Cgroups:
    """One dedicated cgroup, `name`, below this process's own in each hierarchy."""

    dirs: list[Path]

    @classmethod
    def create(cls, name: str) -> Cgroups:
        dirs = []
        for point, path in own_cgroups().items():
            d = point / path.lstrip("/") / name
            d.mkdir(parents=False, exist_ok=True)
            dirs.append(d)
        return cls(dirs)

    def enter_script(self) -> str:
        """Shell lines that move the running shell ($$) into every one of them."""
        return "".join(f"echo $$ > {d}/cgroup.procs\n" for d in self.dirs)

    def pids(self) -> set[int]:
        found: set[int] = set()
        for d in self.dirs:
            for procs in d.rglob("cgroup.procs"):
                try:
                    found |= {int(p) for p in procs.read_text().split()}
                except OSError:
                    pass
        return found

    def remove(self) -> None:
        """Kill what is left in them (every process there is one this fixture started), then remove them,
        deepest first."""
        for _ in range(50):
            left = self.pids()
            if not left:
                break
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
        for d in self.dirs:
            for sub in sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
                _rmdir(sub)
            _rmdir(d)


def _rmdir(d: Path) -> None:
    for _ in range(20):
        try:
            d.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.1)


def _stop_pid(proc: subprocess.Popen, timeout: float) -> None:
    """Wait for `proc` to end, SIGTERM then SIGKILL it if it does not."""
    for sig in (None, signal.SIGTERM, signal.SIGKILL):
        if sig is not None and proc.poll() is None:
            proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            continue


def _wait_for(what: str, check, timeout: float, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what}: the manager exited ({proc.returncode}): {log.read_text()[-2000:]}")
        if check():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what}: not up after {timeout:.0f}s: {log.read_text()[-2000:]}")


# --- the private user manager -----------------------------------------------------------------------


@dataclass
class UserManager:
    """`systemd --user` with HOME=root/home and XDG_RUNTIME_DIR=root/run; user units go in unit_dir."""

    root: Path
    proc: subprocess.Popen
    cgroups: Cgroups
    log: Path

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def runtime_dir(self) -> Path:
        return self.root / "run"

    @property
    def unit_dir(self) -> Path:
        return self.home / ".config" / "systemd" / "user"

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """An environment whose `systemctl --user` (and llmtp's) talks to this manager. SYSTEMD_OFFLINE=0:
        without it systemctl says "offline" here (it cannot stat /proc/1/root)."""
        env = dict(os.environ if base is None else base)
        env.pop("XDG_CONFIG_HOME", None)
        env.update(HOME=str(self.home), XDG_RUNTIME_DIR=str(self.runtime_dir), SYSTEMD_OFFLINE="0")
        return env

    def systemctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["systemctl", "--user", *args], capture_output=True, text=True, env=self.env(), timeout=timeout
        )

    def show(self, unit: str | None, prop: str) -> str:
        """One property of `unit`, or of the manager itself (None)."""
        return self.systemctl("show", "-p", prop, "--value", *([unit] if unit else [])).stdout.strip()

    def remove_units(self, pattern: str) -> None:
        """Stop the units matching `pattern` and delete their files and drop-ins, so the next test starts clean."""
        self.systemctl("stop", f"{pattern}.service", timeout=120)
        for path in self.unit_dir.glob(f"{pattern}.service*"):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        for link in self.unit_dir.glob(f"*.wants/{pattern}.service"):
            link.unlink()
        self.systemctl("daemon-reload")
        self.systemctl("reset-failed")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.systemctl("exit", timeout=30)
        _stop_pid(self.proc, 15)
        self.cgroups.remove()


def start_user_manager(root: Path) -> UserManager:
    """A private user manager under `root` (which must not be under /tmp: units run with PrivateTmp)."""
    for d in ("home", "run"):
        (root / d).mkdir(parents=True, exist_ok=True, mode=0o700)
    cgroups = Cgroups.create(f"llmtp-test-user-{os.getpid()}")
    log = root / "manager.log"
    env = {
        "HOME": str(root / "home"),
        "XDG_RUNTIME_DIR": str(root / "run"),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
    }
    # /run/systemd/inaccessible/*: the nodes a booted PID 1 makes and every manager's sandboxing mounts over
    # what it hides (ProtectKernelLogs= puts `chr` over /dev/kmsg); without them such a unit fails 226/NAMESPACE.
    nodes = (
        "cd /run/systemd/inaccessible && mkdir dir && touch reg && mkfifo fifo && mknod chr c 0 0 && "
        "mknod blk b 0 0 && chmod 0000 dir reg fifo chr blk"
    )
    inner = (
        "mount -t tmpfs tmpfs /run/systemd && mkdir /run/systemd/system /run/systemd/inaccessible && "
        f"({nodes}) && exec {SYSTEMD} --user --unit=default.target --log-target=console"
    )
    script = cgroups.enter_script() + f"exec unshare --mount --propagation private -- sh -c '{inner}'\n"
    with log.open("wb") as out:
        # sh, unshare (no --fork) and sh again all exec: the pid is systemd's.
        proc = subprocess.Popen(
            ["sh", "-c", script],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    mgr = UserManager(root, proc, cgroups, log)
    try:
        _wait_for("user manager", lambda: mgr.show(None, "SystemState") in ("running", "degraded"), 30, proc, log)
    except BaseException:
        mgr.stop()
        raise
    return mgr


# --- the container ------------------------------------------------------------------------------------


def ensure_rootfs(cache: Path) -> Path:
    """A debootstrapped Debian root with systemd, dbus and python3 under `cache`, made once: built in a
    temporary directory and renamed into place under a file lock, so a half-made root is never used."""
    from filelock import FileLock

    cache.mkdir(parents=True, exist_ok=True)
    # The name carries what it was made of: another package list is another root, never a stale one.
    digest = hashlib.sha256(f"{ROOTFS_SUITE} {ROOTFS_MIRROR} {ROOTFS_PACKAGES}".encode()).hexdigest()[:12]
    root = cache / f"{ROOTFS_SUITE}-{digest}"
    with FileLock(str(cache / "rootfs.lock")):
        if (root / "usr" / "lib" / "systemd" / "systemd").is_file():
            return root
        tmp = Path(tempfile.mkdtemp(dir=cache, prefix=".rootfs-"))
        try:
            done = subprocess.run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    f"--include={ROOTFS_PACKAGES}",
                    ROOTFS_SUITE,
                    str(tmp),
                    ROOTFS_MIRROR,
                ],
                capture_output=True,
                text=True,
                timeout=1800,
            )
            if done.returncode != 0:
                raise RuntimeError(f"debootstrap failed ({done.returncode}): {(done.stdout + done.stderr)[-3000:]}")
            # No getty on a pipe console, and nothing that waits on a network the container does not have.
            for unit in ("getty@tty1.service", "systemd-networkd-wait-online.service"):
                (tmp / "etc/systemd/system" / unit).unlink(missing_ok=True)
            os.replace(tmp, root)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return root


@dataclass
class Container:
    """A booted container; `leader` is its PID 1 as the host sees it."""

    name: str
    proc: subprocess.Popen
    cgroups: Cgroups
    log: Path
    leader: int = 0
    binds: list[str] = field(default_factory=list)

    def run(
        self, argv: list[str], *, timeout: float = 120, env: dict[str, str] | None = None, check: bool = False
    ) -> subprocess.CompletedProcess:
        """`argv` inside the container (all its namespaces), as root, with a clean environment."""
        base = [
            "env",
            "-i",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG=C.UTF-8",
            "HOME=/root",
            *[f"{k}={v}" for k, v in (env or {}).items()],
        ]
        done = subprocess.run(
            ["nsenter", "-t", str(self.leader), "-a", *base, *argv], capture_output=True, text=True, timeout=timeout
        )
        if check and done.returncode != 0:
            raise AssertionError(f"{argv} in the container exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done

    def systemctl(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return self.run(["systemctl", *args], timeout=timeout)

    def show(self, unit: str, prop: str) -> str:
        return self.systemctl("show", "-p", prop, "--value", unit).stdout.strip()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # nspawn halts the container's systemd
        _stop_pid(self.proc, 20)
        self.cgroups.remove()


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _booted(box: Container) -> bool:
    # nspawn's child is the container's PID 1 once the outer helper is gone: look again on every try
    kids = _children(box.proc.pid)
    if not kids:
        return False
    box.leader = kids[0]
    try:
        state = box.systemctl("is-system-running", timeout=30).stdout.strip()
    except subprocess.TimeoutExpired:
        return False
    return state in ("running", "degraded")


def boot_container(rootfs: Path, work: Path, *, binds_ro: list[str] = (), name: str | None = None) -> Container:
    """Boot `rootfs` with systemd-nspawn on a throw-away overlay (--volatile=overlay: the cached root is never
    written), sharing the host's network, with `binds_ro` bind-mounted read-only at the same paths."""
    work.mkdir(parents=True, exist_ok=True)
    name = name or f"llmtp-test-{os.getpid()}"
    cgroups = Cgroups.create(name)
    log = work / "container.log"
    argv = [
        "systemd-nspawn",
        "--quiet",
        "--register=no",
        "--keep-unit",
        "--console=pipe",
        "--volatile=overlay",
        "-D",
        str(rootfs),
        "-M",
        name,
        *[f"--bind-ro={b}" for b in binds_ro],
        "--boot",
    ]
    inner = "mount -t tmpfs tmpfs /run/systemd && exec " + " ".join(f"'{a}'" for a in argv)
    script = cgroups.enter_script() + f'exec unshare --mount --propagation private -- sh -c "{inner}"\n'
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["sh", "-c", script], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    box = Container(name, proc, cgroups, log, binds=list(binds_ro))
    try:
        _wait_for("container boot", lambda: _booted(box), 90, proc, log)
    except BaseException:
        box.stop()
        raise
    return box


CONTAINER_PYTHON = "/opt/llmtp/bin/python"


def install_llmtp(box: Container) -> str | None:
    """llmtp installed at /opt/llmtp as its wheel lays it out (outside any home directory, as `service install
    --system` requires): a venv made by the container's own python3, the package copied from the checkout bound
    at /opt/llmtp-src with build_profiles/, patches/ and templates/ as llmtp/_shipped/*, and the host
    interpreter's dependencies (bound at /opt/llmtp-deps) on its path. None when llmtp and its dependencies
    import there, else why not."""
    made = box.run(["python3", "-m", "venv", "--without-pip", "/opt/llmtp"])
    if made.returncode != 0:
        return f"python3 -m venv failed: {made.stderr.strip()[-300:]}"
    version = box.run([CONTAINER_PYTHON, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"]).stdout.strip()
    site = f"/opt/llmtp/lib/python{version}/site-packages"
    shipped = " && ".join(
        f"cp -r /opt/llmtp-src/{d} {site}/llmtp/_shipped/{d}" for d in ("build_profiles", "patches", "templates")
    )
    box.run(
        [
            "sh",
            "-c",
            f"cp -r /opt/llmtp-src/llmtp {site}/ && {shipped} && echo /opt/llmtp-deps > {site}/llmtp-deps.pth",
        ],
        check=True,
    )
    probe = box.run(
        [
            CONTAINER_PYTHON,
            "-c",
            "import llmtp.cli.entry, pydantic, httpx, psutil, filelock, gguf; "
            "from llmtp.adapters import shipped; shipped.profile_names()",
        ]
    )
    if probe.returncode != 0:
        return f"importing llmtp with the container's python {version}: {probe.stderr.strip()[-400:]}"
    return None
