#!/usr/bin/env python3
"""Load generator of bench/mail-imap.sh: CONC client processes run IMAP session mixes (or POP3
RETR sessions) back to back for DURATION seconds and report sessions/s and MB/s. Responses are
not parsed beyond finding the tagged completion, so the client stays cheap."""
import multiprocessing as mp
import socket
import sys
import time

mode, port, duration, conc = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
users = sys.argv[5].split(",")
password = sys.argv[6]


class Conn:
    def __init__(self):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.buf = b""
        self.bytes = 0
        self.n = 0

    def read_until(self, marker):
        """Consumes the buffer through the end of the line where `marker` ends; returns that
        line (from the marker's start)."""
        start = 0
        while True:
            i = self.buf.find(marker, start)
            if i >= 0:
                j = i + len(marker)
                end = j - 1 if marker.endswith(b"\n") else self.buf.find(b"\n", j)
                while end < 0:
                    self._more()
                    end = self.buf.find(b"\n", j)
                line = self.buf[i:end + 1]
                self.buf = self.buf[end + 1:]
                return line
            start = max(0, len(self.buf) - len(marker))
            self._more()

    def readline(self):
        while b"\n" not in self.buf:
            self._more()
        end = self.buf.index(b"\n")
        line, self.buf = self.buf[:end + 1], self.buf[end + 1:]
        return line

    def _more(self):
        d = self.s.recv(1 << 20)
        if not d:
            raise EOFError("server closed the connection")
        self.bytes += len(d)
        self.buf += d

    def imap(self, cmd):
        self.n += 1
        tag = b"b%d" % self.n
        self.s.sendall(tag + b" " + cmd + b"\r\n")
        # The tagged line starts a line: what is left in the buffer starts one too.
        self.buf = b"\r\n" + self.buf
        line = self.read_until(b"\r\n" + tag + b" ")
        if not line.split(b" ")[1].startswith(b"OK"):
            raise RuntimeError(f"{cmd!r}: {line!r}")

    def pop(self, cmd):
        self.s.sendall(cmd + b"\r\n")
        line = self.readline()
        if not line.startswith(b"+OK"):
            raise RuntimeError(f"{cmd!r}: {line!r}")


def imap_session(user):
    c = Conn()
    c.readline()
    c.imap(b'LOGIN "%s" "%s"' % (user.encode(), password.encode()))
    c.imap(b"SELECT INBOX")
    c.imap(b"FETCH 1:* (UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT DATE)])")
    c.imap(b"FETCH 1:20 BODY.PEEK[]")
    c.imap(b"UID SEARCH SUBJECT lunch")
    c.imap(b"SEARCH UNSEEN FROM alice")
    c.imap(b"STORE 1:100 +FLAGS.SILENT (\\Flagged)")
    c.imap(b"STORE 1:100 -FLAGS.SILENT (\\Flagged)")
    c.imap(b"LOGOUT")
    c.s.close()
    return c.bytes


def pop_session(user):
    c = Conn()
    c.readline()
    c.pop(b"USER " + user.encode())
    c.pop(b"PASS " + password.encode())
    for i in range(1, 101):
        c.s.sendall(b"RETR %d\r\n" % i)
        c.read_until(b"\r\n.\r\n")
    c.pop(b"QUIT")
    c.s.close()
    return c.bytes


def worker(i, q):
    user = users[i % len(users)]
    run = imap_session if mode == "imap" else pop_session
    end = time.time() + duration
    sessions = total = errors = 0
    while time.time() < end:
        try:
            total += run(user)
            sessions += 1
        except Exception as e:  # counted, reported
            errors += 1
            if errors == 1:
                print(f"worker {i}: {e}", file=sys.stderr)
    q.put((sessions, total, errors))


if __name__ == "__main__":
    q = mp.Queue()
    procs = [mp.Process(target=worker, args=(i, q)) for i in range(conc)]
    t0 = time.time()
    for p in procs:
        p.start()
    res = [q.get() for _ in procs]
    for p in procs:
        p.join()
    dt = time.time() - t0
    s = sum(r[0] for r in res); b = sum(r[1] for r in res); e = sum(r[2] for r in res)
    print(f"{s / dt:.2f} {b / dt / 1e6:.2f} {e}")
