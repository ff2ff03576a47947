#!/usr/bin/env python3
"""idle.py - resident memory of a proxy holding N idle keep-alive client connections (loopback only).

    bench/idle.py PID PORT [N]

Opens N connections to 127.0.0.1:PORT, sends one GET on each (so each is a keep-alive connection that has served a
request), reads the response, and keeps them open and idle. Prints the proxy's RSS before, after, and per
connection. Needs `ulimit -n` above N (it raises its own soft limit to the hard limit).
"""
import resource, socket, sys, time

def rss(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0

def main():
    pid, port = int(sys.argv[1]), int(sys.argv[2])
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 10_000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    request = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
    warm = socket.create_connection(("127.0.0.1", port)); warm.sendall(request); warm.recv(65536); warm.close()
    time.sleep(0.5)
    before = rss(pid)
    conns = []
    deadline = time.time() + 120
    for i in range(n):
        if time.time() > deadline:
            break
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < 100:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        conns.append(s)
    time.sleep(1.0)
    after = rss(pid)
    per = (after - before) / max(len(conns), 1)
    print(f"connections={len(conns)} rss_before={before/1024:.0f}KiB rss_after={after/1024:.0f}KiB "
          f"growth={(after-before)/1024:.0f}KiB per_connection={per/1024:.1f}KiB")
    for s in conns:
        s.close()

if __name__ == "__main__":
    main()
