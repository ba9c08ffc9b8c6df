"""A local cluster's own network: its tasks share a private network namespace whose one interface is a loopback.

TensorFlow's gRPC servers listen on ``0.0.0.0:PORT`` whatever address the cluster names, and have no authentication.
In a namespace of its own, a local cluster's servers are reachable by its own tasks alone: not by another machine, not
by another user's process on this one.

Linux: a holder process unshares a network namespace (and, when not root, a user namespace that owns it, as
``unshare --user --net`` does), brings its loopback up and waits; each task joins it (``setns``) before it starts.
Where the kernel does not allow it (user namespaces switched off, another OS), ``Network.start`` says why and the
cluster runs in the machine's network.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
import sys

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000

# The holder: unshare, loopback up, "ready", then wait until the launcher closes its stdin (or dies: SIGKILL).
_HOLDER = r"""
import ctypes, fcntl, os, signal, socket, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: gone with the launcher, even killed -9
uid, gid = os.getuid(), os.getgid()
if libc.unshare(%(net)d | (0 if uid == 0 else %(user)d)) != 0:
    print("unshare:", os.strerror(ctypes.get_errno()), flush=True)
    sys.exit(1)
try:
    if uid != 0:  # this user is itself in the new user namespace (no root inside, no other ids)
        for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)
    with socket.socket() as s:  # SIOCGIFFLAGS, SIOCSIFFLAGS with IFF_UP on "lo"
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, 0x8913, struct.pack("16sH14x", b"lo", 0)))[1]
        fcntl.ioctl(s, 0x8914, struct.pack("16sH14x", b"lo", flags | 1))
except OSError as err:
    print("loopback:", err, flush=True)
    sys.exit(1)
print("ready", flush=True)
sys.stdin.read()
""" % {"net": CLONE_NEWNET, "user": CLONE_NEWUSER}  # noqa: UP031 (Python code with braces)


class Network:
    """The private network of one local cluster, held while the ``with`` block runs; ``join`` (in a task's child
    process, before exec) enters it. ``why_not`` says why there is none (the machine's network is used)."""

    def __init__(self) -> None:
        self.holder: subprocess.Popen | None = None
        self.why_not = ""
        self._fds: list[int] = []

    def __enter__(self) -> Network:
        if not sys.platform.startswith("linux"):
            self.why_not = f"network namespaces are Linux's ({sys.platform} has none)"
            return self
        self.holder = subprocess.Popen([sys.executable, "-I", "-c", _HOLDER], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        first = self.holder.stdout.readline().strip()
        if first != "ready":
            self.why_not = (first or f"the holder ended with status {self.holder.wait()}") + (
                "; the kernel may not allow user namespaces (sysctl kernel.unprivileged_userns_clone, or "
                "kernel.apparmor_restrict_unprivileged_userns)" if os.getuid() != 0 else "")
            self._end()
            return self
        kinds = ["net"] if os.getuid() == 0 else ["user", "net"]  # a user namespace first: it owns the network one
        self._fds = [os.open(f"/proc/{self.holder.pid}/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC) for kind in kinds]
        return self

    @property
    def private(self) -> bool:
        return bool(self._fds)

    def join(self) -> None:
        """In a child process between fork and exec: enter the namespaces (setns), or fail the child's start."""
        libc = ctypes.CDLL(None, use_errno=True)
        for fd in self._fds:
            if libc.setns(fd, 0) != 0:
                raise OSError(ctypes.get_errno(), "setns into the local cluster's network")

    def __exit__(self, *exc) -> None:
        self._end()

    def _end(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds = []
        if self.holder is not None:
            with contextlib.suppress(OSError):
                self.holder.stdin.close()
            try:
                self.holder.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.holder.kill()
                self.holder.wait()
            self.holder.stdout.close()
            self.holder = None
