#!/usr/bin/env python3
"""What does a sender see when it writes after its peer closed?
Plain TCP: the first write succeeds (the peer answers it with RST), a later
one fails with EPIPE/ECONNRESET."""
import socket, time, sys, json, signal
signal.signal(signal.SIGPIPE, signal.SIG_IGN)

def one(exchanges, size):
    l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind(("127.0.0.1", 0)); l.listen(8)
    c = socket.create_connection(l.getsockname())
    s, _ = l.accept()
    for _ in range(exchanges):
        c.sendall(b"p" * size); got = b""
        while len(got) < size: got += s.recv(65536)
        s.sendall(got); got = b""
        while len(got) < size: got += c.recv(65536)
    s.close(); l.close()
    time.sleep(0.05)
    res = []
    for _ in range(3):
        try:
            n = c.send(b"x" * size); res.append(f"ok {n}")
        except OSError as e:
            res.append(e.__class__.__name__)
        time.sleep(0.05)
    try:
        d = c.recv(10); rd = f"recv {len(d)}"
    except OSError as e:
        rd = e.__class__.__name__
    c.close()
    return res + [rd]

out = {}
for ex in (0, 1, 5):
    for size in (100,):
        out[f"exchanges={ex}"] = one(ex, size)
print(json.dumps(out))
