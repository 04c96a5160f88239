"""A wxb serve app under uvicorn on an ephemeral port of 127.0.0.1, in a background thread
(shared by the server's tests and the playground's)."""

from __future__ import annotations

import socket
import threading
import time

import httpx


class Server:
    """``with Server(create_app(...)) as running:`` -> ``running.url``; ``wait_ready()``
    waits until /health says the model is loaded; ``engine`` is the app's engine."""

    def __init__(self, app) -> None:
        import uvicorn

        self.app, self.state = app, app.state.served
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "no server"
            time.sleep(0.01)
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while httpx.get(f"{self.url}/health").status_code != 200:  # loads after start-up
            assert time.monotonic() < deadline, httpx.get(f"{self.url}/health").text
            time.sleep(0.02)

    @property
    def engine(self):
        return self.state.engine

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        self.sock.close()
