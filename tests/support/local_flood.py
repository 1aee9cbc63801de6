"""A local user against the daemon's listeners (issue #18). One mode per attack; each runs
for SECONDS and prints what it got, as numbers on one line.

  hold-unix PATH CONNECTIONS SECONDS
      Keeps CONNECTIONS idle connections to the unix socket open, connecting again as
      soon as the daemon closes one. Prints: connects answers 403s 503s (answers are the
      connections the daemon sent anything on).
  churn-tcp HOST PORT SECONDS
      Opens silent connections to the container endpoint, about 1,000 a second, keeping
      the 64 newest open. Prints: connects.
  reset-tcp HOST PORT SECONDS
      Connects and resets (SO_LINGER 0), about 1,000 times a second. Prints: connects.

(The TCP floods are paced: flat out, a few Python processes outrun the accept loop of a
debug build on a 2-core machine and fill the listen queue, which tests CPU, not admission.)
  timewait COUNT
      Leaves COUNT loopback TCP sockets in TIME_WAIT (its own connections to its own
      listeners, closed client first), filling the host's TCP table. Prints: sockets.
  fetch-unix PATH COUNT
      The legitimate client: COUNT credentials requests on the unix socket, each on a new
      connection with a blocking connect (as the client commands make it, waiting for room
      in the listen backlog), 100 ms apart. Prints one line per request: status seconds.
  subuids PATH FIRST COUNT PER_UID
      Run as root: in a new user namespace mapping 0..65536 to outer FIRST.., forks COUNT
      processes, each as its own uid (outer FIRST+1..), each sending PER_UID credentials
      requests on the unix socket. Prints: 200s 429s 503s other.
"""
import ctypes
import os
import resource
import selectors
import socket
import struct
import sys
import time
from collections import deque

REQUEST = b"GET /v1/credentials HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def hold_unix(path, connections, seconds):
    connections = min(connections, raise_fd_limit() - 64)
    end = time.monotonic() + seconds
    selector = selectors.DefaultSelector()
    held, connects, answers, forbidden, unavailable = 0, 0, 0, 0, 0
    while time.monotonic() < end:
        while held < connections and time.monotonic() < end:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(0.05)
            try:
                s.connect(path)
            except OSError:
                s.close()
                break
            s.setblocking(False)
            selector.register(s, selectors.EVENT_READ)
            held += 1
            connects += 1
        for key, _ in selector.select(0.02):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            if data:
                answers += 1
                forbidden += data.startswith(b"HTTP/1.1 403 ")
                unavailable += data.startswith(b"HTTP/1.1 503 ")
            selector.unregister(s)
            s.close()
            held -= 1
    print(connects, answers, forbidden, unavailable)


def churn_tcp(host, port, seconds):
    raise_fd_limit()
    end = time.monotonic() + seconds
    open_ones, connects = deque(), 0
    while time.monotonic() < end:
        try:
            open_ones.append(socket.create_connection((host, port), timeout=1))
            connects += 1
        except OSError:
            time.sleep(0.001)
        while len(open_ones) > 64:
            open_ones.popleft().close()
        time.sleep(0.001)
    print(connects)


def reset_tcp(host, port, seconds):
    end = time.monotonic() + seconds
    connects = 0
    while time.monotonic() < end:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        try:
            s.connect((host, port))
            connects += 1
        except OSError:
            pass
        s.close()
        time.sleep(0.001)
    print(connects)


def timewait(count):
    listeners = []
    for _ in range(max(1, count // 20000 + 1)):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        listeners.append(listener)
    made = 0
    while made < count:
        listener = listeners[made % len(listeners)]
        try:
            client = socket.create_connection(listener.getsockname())
        except OSError:
            break
        server, _ = listener.accept()
        client.close()
        server.close()
        made += 1
    print(made)


def fetch_unix(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # A blocking connect waits for room in a full listen backlog, for at most SO_SNDTIMEO.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 2, 0))
    try:
        s.connect(path)
        s.settimeout(5)
        s.sendall(REQUEST)
        # Everything until the daemon closes (the request asks it to).
        answer = s.makefile("rb").read()
        return answer.split(b" ", 2)[1].decode() if answer else "none"
    except OSError as error:
        return type(error).__name__
    finally:
        s.close()


def subuids(path, first, count, per_uid):
    go_read, go_write = os.pipe()
    ready_read, ready_write = os.pipe()
    results_read, results_write = os.pipe()
    child = os.fork()
    if child == 0:
        if ctypes.CDLL(None, use_errno=True).unshare(0x10000000) != 0:  # CLONE_NEWUSER
            os._exit(3)
        os.write(ready_write, b"x")
        os.read(go_read, 1)
        os.setgid(0)
        os.setuid(0)
        pids = []
        for uid in range(1, count + 1):
            pid = os.fork()
            if pid == 0:
                os.setgid(uid)
                os.setuid(uid)
                statuses = [fetch_unix(path) for _ in range(per_uid)]
                os.write(results_write, (" ".join(statuses) + "\n").encode())
                os._exit(0)
            pids.append(pid)
        for pid in pids:
            os.waitpid(pid, 0)
        os._exit(0)
    os.read(ready_read, 1)
    with open(f"/proc/{child}/uid_map", "w") as f:
        f.write(f"0 {first} 65536")
    with open(f"/proc/{child}/setgroups", "w") as f:
        f.write("deny")
    with open(f"/proc/{child}/gid_map", "w") as f:
        f.write(f"0 {first} 65536")
    os.write(go_write, b"x")
    os.close(results_write)
    text = b""
    while True:
        chunk = os.read(results_read, 65536)
        if not chunk:
            break
        text += chunk
    os.waitpid(child, 0)
    statuses = text.decode().split()
    counts = [statuses.count(code) for code in ("200", "429", "503")]
    print(*counts, len(statuses) - sum(counts))


def fetch_many(path, count):
    for _ in range(count):
        started = time.monotonic()
        status = fetch_unix(path)
        print(status, time.monotonic() - started, flush=True)
        time.sleep(0.1)


mode, args = sys.argv[1], sys.argv[2:]
if mode == "hold-unix":
    hold_unix(args[0], int(args[1]), float(args[2]))
elif mode == "churn-tcp":
    churn_tcp(args[0], int(args[1]), float(args[2]))
elif mode == "reset-tcp":
    reset_tcp(args[0], int(args[1]), float(args[2]))
elif mode == "timewait":
    timewait(int(args[0]))
elif mode == "fetch-unix":
    fetch_many(args[0], int(args[1]))
elif mode == "subuids":
    subuids(args[0], int(args[1]), int(args[2]), int(args[3]))
else:
    sys.exit(f"unknown mode {mode}")
