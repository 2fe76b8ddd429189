#!/usr/bin/env python3
"""The peer of a migrating guest (scenario "mig" of guest/init.sh).

serve: streams to the connections the guest opens and counts what comes
back, while probing the guest's allowed and denied ports, until SIGTERM;
then prints one JSON summary. Every TCP connection and the UDP flow were
opened by the guest, so with a deny-by-default ingress the host's
segments reach it only while the guest's firewall state is known where
it runs.

    migprobe.py serve LISTEN_IP VM_IP [--stream-ms 20]

flood: opens COUNT UDP flows to VM_IP (distinct destination ports from
a few source sockets on fixed ports), so that the guest's conntrack
tables hold that many entries; run again, it refreshes the same flows.

    migprobe.py flood VM_IP COUNT PORT_LO PORT_HI
"""

import json
import signal
import socket
import sys
import threading
import time

TCP_PORT, UDP_PORT, ALLOWED, DENIED = 7000, 7001, 8080, 9000
GAP_REPORTED_S = 0.25


class Stream:
    """One echoed flow: what was sent, what came back, the longest
    silence, and how it ended."""

    def __init__(self, name):
        self.name = name
        self.sent = 0
        self.echoed = 0
        self.out_of_order = 0
        self.last = time.monotonic()
        self.max_gap = 0.0
        self.gaps = []  # [start (s since probe start), length ms] of long silences
        self.ended = None

    def echo(self, seq, t0):
        now = time.monotonic()
        gap = now - self.last
        if gap > GAP_REPORTED_S:
            self.gaps.append([round(self.last - t0, 2), int(gap * 1000)])
        self.max_gap = max(self.max_gap, gap)
        self.last = now
        if seq != self.echoed:
            self.out_of_order += 1
        self.echoed = seq + 1

    def summary(self):
        return {
            "name": self.name,
            "sent": self.sent,
            "echoed": self.echoed,
            "out_of_order": self.out_of_order,
            "max_gap_ms": int(self.max_gap * 1000),
            "gaps": self.gaps,
            "ended": self.ended,
        }


class Probe:
    def __init__(self, listen, vm, period):
        self.listen, self.vm, self.period = listen, vm, period
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.t0 = time.monotonic()
        self.tcp = []
        self.udp = None
        self.udp_lost = 0
        self.denied = {"tries": 0, "reached": 0}
        self.allowed = {"tries": 0, "ok": 0}

    # TCP: every connection the guest opens gets a stream of numbered lines.
    def tcp_accept(self):
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((self.listen, TCP_PORT))
        srv.listen(16)
        srv.settimeout(0.5)
        while not self.stop.is_set():
            try:
                conn, _ = srv.accept()
            except socket.timeout:
                continue
            with self.lock:
                s = Stream(f"tcp{len(self.tcp) + 1}")
                self.tcp.append(s)
            threading.Thread(target=self.tcp_send, args=(conn, s), daemon=True).start()
            threading.Thread(target=self.tcp_read, args=(conn, s), daemon=True).start()

    def tcp_send(self, conn, s):
        while not self.stop.is_set() and s.ended is None:
            try:
                conn.sendall(b"%d\n" % s.sent)
            except OSError as e:
                s.ended = s.ended or f"send: {e}"
                return
            s.sent += 1
            time.sleep(self.period)

    def tcp_read(self, conn, s):
        buf = b""
        conn.settimeout(0.5)
        while not self.stop.is_set():
            try:
                data = conn.recv(65536)
            except socket.timeout:
                continue
            except OSError as e:
                s.ended = s.ended or f"recv: {e}"
                return
            if not data:
                s.ended = s.ended or "closed by the guest"
                return
            buf += data
            *lines, buf = buf.split(b"\n")
            for line in lines:
                s.echo(int(line), self.t0)

    # UDP: the guest says hello, then echoes every datagram.
    def udp_flow(self):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((self.listen, UDP_PORT))
        sock.settimeout(0.5)
        peer = None
        while not self.stop.is_set() and peer is None:
            try:
                data, addr = sock.recvfrom(2048)
            except socket.timeout:
                continue
            if data.strip() == b"hello":
                peer = addr
        if peer is None:
            return
        s = self.udp = Stream("udp")
        threading.Thread(target=self.udp_send, args=(sock, peer, s), daemon=True).start()
        while not self.stop.is_set():
            try:
                data, addr = sock.recvfrom(2048)
            except socket.timeout:
                continue
            if addr != peer:
                continue
            for line in data.split(b"\n"):
                if line.strip().isdigit():
                    seq = int(line)
                    # Datagrams may be lost: count the skipped ones.
                    if seq > s.echoed:
                        self.udp_lost += seq - s.echoed
                    s.echo(seq, self.t0)

    def udp_send(self, sock, peer, s):
        while not self.stop.is_set():
            try:
                sock.sendto(b"%d\n" % s.sent, peer)
            except OSError:
                pass
            s.sent += 1
            time.sleep(self.period)

    # Probes from outside: the denied port must never answer, the allowed
    # one should (except while the guest is paused for the switch-over).
    def probe_ports(self):
        n = 0
        while not self.stop.is_set():
            self.denied["tries"] += 1
            # An answer of any kind (SYN-ACK or RST) means the SYN got in.
            # A connection that echoes (the guest's cat) or a reset (RST)
            # means the SYN got in.
            r = self.connect(DENIED, b"denied\n")
            if r in ("ok", "refused"):
                self.denied["reached"] += 1
            if r not in ("timeout", "error 113"):
                self.denied.setdefault("answers", []).append([round(time.monotonic() - self.t0, 2), r])
            if n % 4 == 0:
                self.allowed["tries"] += 1
                r = self.connect(ALLOWED, b"allowed\n")
                if r == "ok":
                    self.allowed["ok"] += 1
                else:
                    self.allowed.setdefault("failures", []).append([round(time.monotonic() - self.t0, 2), r])
            n += 1
            time.sleep(0.25)

    def connect(self, port, line):
        try:
            with socket.create_connection((self.vm, port), timeout=0.5) as c:
                c.settimeout(2)
                c.sendall(line)
                return "ok" if c.recv(64) == line else "no echo"
        except socket.timeout:
            return "timeout"
        except ConnectionRefusedError:
            return "refused"
        except OSError as e:
            return f"error {e.errno}"

    def summary(self):
        return {
            "seconds": round(time.monotonic() - self.t0, 1),
            "tcp_connections": len(self.tcp),
            "tcp": [s.summary() for s in self.tcp],
            "udp": self.udp.summary() if self.udp else None,
            "udp_lost": self.udp_lost,
            "denied_port": self.denied,
            "allowed_port": self.allowed,
        }


def serve(listen, vm, period_ms=20):
    p = Probe(listen, vm, period_ms / 1000)
    signal.signal(signal.SIGTERM, lambda *_: p.stop.set())
    for f in (p.tcp_accept, p.udp_flow, p.probe_ports):
        threading.Thread(target=f, daemon=True).start()
    while not p.stop.wait(0.2):
        pass
    json.dump(p.summary(), sys.stdout)
    sys.stdout.write("\n")
    sys.stdout.flush()


def flood(vm, count, lo, hi):
    ports = hi - lo + 1
    socks = []
    # Fixed source ports: a second flood refreshes the same flows.
    for i in range((count + ports - 1) // ports):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
        s.bind(("0.0.0.0", 41000 + i))
        socks.append(s)
    sent = 0
    for s in socks:
        for port in range(lo, hi + 1):
            if sent == count:
                break
            while True:
                try:
                    s.sendto(b"x", (vm, port))
                    break
                except BlockingIOError:
                    time.sleep(0.001)
                except OSError as e:  # ENOBUFS: the device queue is full
                    if e.errno != 105:
                        raise
                    time.sleep(0.001)
            sent += 1
    print(sent)


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "serve":
        serve(sys.argv[2], sys.argv[3], int(sys.argv[5]) if len(sys.argv) > 5 else 20)
    elif len(sys.argv) == 6 and sys.argv[1] == "flood":
        flood(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    else:
        sys.exit(__doc__)
