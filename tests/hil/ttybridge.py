"""The technician's terminal over TCP, for a bench run on a box with no person at it (the emulated box).

Runs COMMAND with a new pty as its controlling terminal (what `ssh -t` gives a technician: the suite's
prompts go to /dev/tty) and relays that pty both ways over one TCP connection to whoever answers. When the
command has ended it sends `@@HIL-EXIT <code>@@`, then each --send file as `@@FILE <name> <bytes>@@` and
its bytes, then `@@END@@`. Standard library only: it runs with the box's own Python.

    python ttybridge.py HOST PORT [--send FILE]... -- COMMAND [ARG]...
"""

from __future__ import annotations

import argparse
import os
import pty
import select
import signal
import socket
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--" not in argv:
        sys.exit(__doc__)
    cut = argv.index("--")  # the command's own arguments may hold another "--"
    parser = argparse.ArgumentParser()
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--send", type=Path, action="append", default=[])
    args = parser.parse_args(argv[:cut])
    args.command = argv[cut + 1 :]
    sock = socket.create_connection((args.host, args.port), timeout=30)
    sock.settimeout(None)
    pid, fd = pty.fork()
    if pid == 0:  # the child: the pty is its stdin, stdout, stderr and controlling terminal
        try:
            os.execvp(args.command[0], args.command)
        finally:
            os._exit(127)
    relay(fd, sock, pid)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    sock.sendall(f"\n@@HIL-EXIT {code}@@\n".encode())
    for path in args.send:
        try:
            data = path.read_bytes()
        except OSError:
            data = b""
        sock.sendall(f"@@FILE {path.name} {len(data)}@@\n".encode() + data)
    sock.sendall(b"@@END@@\n")
    sock.close()
    return 0


def relay(fd: int, sock: socket.socket, pid: int) -> None:
    """Until the command's side of the pty closes: its output to the socket, the socket's bytes to it."""
    while True:
        ready, _, _ = select.select([fd, sock.fileno()], [], [])
        if fd in ready:
            try:
                data = os.read(fd, 4096)
            except OSError:  # EIO: every process of the command closed the pty
                data = b""
            if not data:
                return
            sock.sendall(data)
        if sock.fileno() in ready:
            data = sock.recv(4096)
            if not data:  # the other end went away: the run ends as on Ctrl-C
                os.kill(pid, signal.SIGTERM)
                sock_gone(fd)
                return
            os.write(fd, data)


def sock_gone(fd: int) -> None:
    """Drain the pty so the command is not blocked writing to it while it ends."""
    while select.select([fd], [], [], 5)[0]:
        try:
            if not os.read(fd, 4096):
                return
        except OSError:
            return


if __name__ == "__main__":
    sys.exit(main())
