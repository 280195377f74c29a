"""A loopback TCP proxy the tests can cut and restore: a real outage of a real server, seen by the client
exactly as a network failure (refused connects, reset connections), without stopping the shared server."""

from __future__ import annotations

import contextlib
import socket
import threading

# MySQL's COMMIT as pymysql sends it: a COM_QUERY (0x03) packet whose text is COMMIT.
MYSQL_COMMIT = b"\x03COMMIT"


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._listener: socket.socket | None = None
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        # Armed by fail_next: (client bytes that trigger it, whether the server still gets them).
        self._trap: tuple[bytes, bool] | None = None
        self._muted: set[socket.socket] = set()  # upstreams whose answers are dropped, not relayed
        self._answered = threading.Event()
        self.sprung = threading.Event()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        """Stop listening and reset every open connection: the server is gone."""
        listener, self._listener = self._listener, None
        if listener is not None:
            # close() alone does not wake a thread blocked in accept() on Linux (and the socket keeps
            # listening until it returns); shutdown() does.
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            connections, self._connections = self._connections, set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()

    def fail_next(self, marker: bytes, deliver: bool) -> None:
        """The next client packet containing `marker` breaks its connection: with `deliver`, the server gets
        it and its answer is lost (a COMMIT applied whose acknowledgement never arrives); without, the server
        never sees it. Either way the client sees a connection reset."""
        self.sprung.clear()
        self._trap = (marker, deliver)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._connections.update((client, upstream))
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, from_client: bool) -> None:
        try:
            while data := source.recv(65536):
                trap = self._trap if from_client else None
                if trap is not None and trap[0] in data:
                    self._trap = None
                    self._spring(source, sink, data, deliver=trap[1])
                    return
                if source in self._muted:
                    self._answered.set()
                    return
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def _spring(self, client: socket.socket, upstream: socket.socket, data: bytes, deliver: bool) -> None:
        if deliver:
            # The server acts on it and answers; the answer is dropped, then the connection broken.
            self._answered.clear()
            self._muted.add(upstream)
            upstream.sendall(data)
            self._answered.wait(5)
        for end in (client, upstream):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
        self.sprung.set()
