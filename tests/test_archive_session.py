"""ArchiveSession: a GET whose connection the archive drops unanswered is asked again once; other
requests, and refused connections, fail as before."""

from __future__ import annotations

import http.server
import threading

import pytest
import requests

from cardiac_mi.store import ArchiveSession


class _DropFirst(http.server.BaseHTTPRequestHandler):
    """Closes the connection without an answer on every other request (as a server closing an idle
    keep-alive connection just as it is reused), answers the others."""

    calls = 0

    def _handle(self):
        type(self).calls += 1
        if type(self).calls % 2 == 1:
            self.close_connection = True
            self.connection.close()
            return
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _handle

    def log_message(self, *args):  # quiet
        pass


@pytest.fixture
def dropping_server():
    _DropFirst.calls = 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _DropFirst)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_get_is_asked_again_on_a_dropped_connection(dropping_server):
    answer = ArchiveSession((2, 5)).get(f"{dropping_server}/a")
    assert answer.status_code == 200 and answer.json() == {"ok": True}
    assert _DropFirst.calls == 2


def test_post_is_not_sent_twice(dropping_server):
    with pytest.raises(requests.ConnectionError):
        ArchiveSession((2, 5)).post(f"{dropping_server}/studies", data=b"x")
    assert _DropFirst.calls == 1


def test_refused_connection_is_not_retried():
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(requests.ConnectionError):
        ArchiveSession((2, 5)).get(f"http://127.0.0.1:{port}/nothing")
