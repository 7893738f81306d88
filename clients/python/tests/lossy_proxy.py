"""A TCP proxy that can lose the server's answers: the real network fault behind a retried command.

It forwards bytes both ways (TLS passes through untouched). `hold()` makes it drop whatever the
server sends from then on, so a request reaches the server, is applied, and its answer never
arrives; `cut()` closes every connection (the client sees the connection break after it sent
its request). A held connection cannot be resumed: the dropped bytes were TLS records.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class LossyProxy:
    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self._target = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._holding = False
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def hold(self) -> None:
        self._holding = True

    def cut(self) -> None:
        """Close every open connection, and forward everything on the connections that follow."""
        with self._lock:
            sockets, self._sockets = self._sockets, []
            self._holding = False
        for sock in sockets:
            _shut(sock)

    def close(self) -> None:
        self.cut()
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
                upstream = socket.create_connection(self._target)
            except OSError:
                return
            with self._lock:
                self._sockets += [client, upstream]
                self.connections += 1
            for source, sink, answers in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(
                    target=self._pump, args=(source, sink, answers), daemon=True
                ).start()

    def _pump(self, source: socket.socket, sink: socket.socket, answers: bool) -> None:
        try:
            while data := source.recv(65536):
                if answers and self._holding:
                    continue  # the answer is lost on the way back
                sink.sendall(data)
        except OSError:
            pass
        finally:
            _shut(source)
            _shut(sink)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
