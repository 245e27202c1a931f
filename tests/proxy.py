"""A loopback TCP proxy the fault tests can cut and restore.

``cut()`` closes every proxied connection and the listening socket, so new
connections are refused; ``restore()`` listens again on the same port.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType

#: How often the accept loop looks at its stop flag, in seconds.
POLL = 0.05


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.host = "127.0.0.1"
        self.port = 0
        self.accepted = 0
        #: Replies from the target still to swallow: the request went through, its answer
        #: never comes back.
        self.replies_to_drop = 0
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._listening = threading.Event()
        self._accept_thread: threading.Thread | None = None

    def __enter__(self) -> TcpProxy:
        self.restore()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cut()
        for thread in self._threads:
            thread.join(2)

    def restore(self) -> None:
        """Listen (again, on the same port) and proxy new connections."""
        if self._accept_thread is not None:
            return
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(64)
        listener.settimeout(POLL)
        self.port = listener.getsockname()[1]
        self._listening.set()
        self._accept_thread = threading.Thread(
            target=self._accept, args=(listener,), name="proxy-accept", daemon=True
        )
        self._accept_thread.start()

    def cut(self) -> None:
        """Close every proxied connection and refuse new ones until :meth:`restore`."""
        self._listening.clear()
        if self._accept_thread is not None:
            self._accept_thread.join(5)
            self._accept_thread = None
        with self._lock:
            sockets = list(self._sockets)
            self._sockets.clear()
        for sock in sockets:
            _close(sock)

    def _dropped(self) -> bool:
        with self._lock:
            if self.replies_to_drop <= 0:
                return False
            self.replies_to_drop -= 1
            return True

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._sockets) // 2

    def _accept(self, listener: socket.socket) -> None:
        try:
            while self._listening.is_set():
                try:
                    client, _ = listener.accept()
                except TimeoutError:
                    continue
                client.settimeout(None)
                try:
                    upstream = socket.create_connection(self.target, timeout=5)
                except OSError:
                    _close(client)
                    continue
                upstream.settimeout(None)
                with self._lock:
                    if not self._listening.is_set():
                        _close(client)
                        _close(upstream)
                        break
                    self._sockets.update((client, upstream))
                    self.accepted += 1
                self._threads = [t for t in self._threads if t.is_alive()]
                for source, sink, replies in ((client, upstream, False), (upstream, client, True)):
                    thread = threading.Thread(
                        target=self._pump,
                        args=(source, sink, replies),
                        name="proxy-pump",
                        daemon=True,
                    )
                    self._threads.append(thread)
                    thread.start()
        finally:
            listener.close()

    def drop_replies(self, count: int = 1) -> None:
        """Swallow the next ``count`` chunks the target sends back, as a lost reply would be."""
        with self._lock:
            self.replies_to_drop += count

    def _pump(self, source: socket.socket, sink: socket.socket, replies: bool) -> None:
        try:
            while data := source.recv(65536):
                if replies and self._dropped():
                    continue
                sink.sendall(data)
        except OSError:
            pass  # cut, or closed by the other side: either way this pair is done
        with self._lock:
            self._sockets.discard(source)
            self._sockets.discard(sink)
        _close(source)
        _close(sink)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
