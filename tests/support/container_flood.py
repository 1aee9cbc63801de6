"""A local user flooding the container endpoint, as in issue #11: CONNECTIONS keep-alive
connections, each sending an unauthenticated GET every INTERVAL seconds for SECONDS, and
connecting again whenever the daemon closes one. Prints the number of requests answered
and the number of connections made."""
import socket
import sys
import threading
import time

host, port = sys.argv[1], int(sys.argv[2])
connections, interval, seconds = int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
end = time.monotonic() + seconds
request = b"GET /v1/credentials HTTP/1.1\r\nHost: " + host.encode() + b"\r\n\r\n"
answered = [0]
connects = [0]
lock = threading.Lock()


def flood():
    conn = None
    while time.monotonic() < end:
        try:
            if conn is None:
                conn = socket.create_connection((host, port), timeout=5)
                with lock:
                    connects[0] += 1
            conn.sendall(request)
            answer = conn.recv(4096)
            if answer:
                with lock:
                    answered[0] += 1
            if not answer or b"connection: close" in answer.lower():
                conn.close()
                conn = None
        except OSError:
            if conn is not None:
                conn.close()
            conn = None
        time.sleep(interval)


threads = [threading.Thread(target=flood, daemon=True) for _ in range(connections)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join(seconds + 10)
print(answered[0], connects[0])
