"""policyfixture: small policy servers for the check_policy_service tests (stdlib only).

    PolicyServer(answer)   a threaded TCP (or, with path=, unix-socket) server that speaks
                           Postfix's policy protocol: each request (name=value lines, an empty
                           line) is recorded as a dict in .requests, and answered with
                           answer(request) -> bytes to send (None: say nothing and keep the
                           connection; b"": close it).  .connections counts accepted ones.
    action(text)           the usual answer: b"action=<text>\\n\\n".
    free_port()            harness.free_port().
"""

import os
import socket
import threading

import harness


def action(text):
    return ("action=%s\n\n" % text).encode()


class PolicyServer:
    def __init__(self, answer, path=None):
        self.answer = answer
        self.requests = []
        self.connections = 0
        self.lock = threading.Lock()
        self.stopping = False
        self.path = path
        if path:
            if os.path.exists(path):
                os.unlink(path)
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind(path)
            os.chmod(path, 0o777)
            self.port = None
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind(("127.0.0.1", 0))
            self.port = self.sock.getsockname()[1]
        self.sock.listen(64)
        self.conns = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        buf = b""
        try:
            while True:
                data = c.recv(65536)
                if not data:
                    return
                buf += data
                while b"\n\n" in buf:
                    req, buf = buf.split(b"\n\n", 1)
                    attrs = {}
                    order = []
                    for line in req.decode("utf-8", "replace").split("\n"):
                        k, _, v = line.partition("=")
                        attrs[k] = v
                        order.append(k)
                    attrs["_order"] = order
                    with self.lock:
                        self.requests.append(attrs)
                    out = self.answer(attrs)
                    if out is None:
                        continue
                    if out == b"":
                        c.close()
                        return
                    c.sendall(out)
        except OSError:
            return
        finally:
            try:
                c.close()
            except OSError:
                pass

    def stop(self):
        self.stopping = True
        try:
            self.sock.close()
        except OSError:
            pass
        with self.lock:
            for c in self.conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        if self.path and os.path.exists(self.path):
            os.unlink(self.path)
