"""An IP camera emulator: frames served as MJPEG over HTTP on 127.0.0.1.

:class:`MJPEGServer` serves whatever frames it is given with :meth:`MJPEGServer.publish`
at ``http://127.0.0.1:PORT/stream.mjpg`` as ``multipart/x-mixed-replace`` (the stream
format of most IP and ESP32 cameras, and what ``cv2.VideoCapture("http://...mjpg")`` reads
through FFmpeg's ``mpjpeg`` demuxer), each part one JPEG made by ``cv2.imencode``. Every
client gets every frame published after it connected; a client too slow to keep up skips
to the newest frame, as a camera does.

It listens on the loopback interface only (the host is not a parameter). Faults, for the
rig's tests: :meth:`corrupt` sends the next ``n`` frames as undecodable JPEGs (a valid
start and end marker around random bytes, with a correct ``Content-Length``, so the stream
stays in sync), :meth:`stall` keeps the connections open but stops sending (a camera that
hangs).
"""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import cv2
import numpy as np

log = logging.getLogger(__name__)

#: the only address the server binds
LOOPBACK = "127.0.0.1"
_BOUNDARY = "labbenchframe"


class MJPEGServer:
    """Serve published frames as an MJPEG stream over HTTP on 127.0.0.1.

    Parameters
    ----------
    port : int
        TCP port (0: any free port; see :attr:`port` after :meth:`start`).
    path : str
        The stream's path; any other path answers 404.
    quality : int
        JPEG quality, 1..100.
    """

    def __init__(self, *, port: int = 0, path: str = "/stream.mjpg", quality: int = 90) -> None:
        if not 1 <= quality <= 100:
            raise ValueError(f"camera server: quality must be 1..100, got {quality}")
        self.path = path
        self.quality = int(quality)
        self._port = int(port)
        self._cond = threading.Condition()
        self._jpeg: bytes | None = None
        self._seq = 0
        self._corrupt = 0
        self._stalled = False
        self._closing = threading.Event()
        self._rng = np.random.default_rng(0)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.stats = dict.fromkeys(("published", "sent", "corrupted", "clients"), 0)

    # -- life cycle ---------------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The bound TCP port (after :meth:`start`)."""
        return self._httpd.server_address[1] if self._httpd is not None else self._port

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port)."""
        if self._httpd is None:
            raise RuntimeError("camera server: not started")
        return self._httpd.server_address[:2]

    @property
    def url(self) -> str:
        """What ``cv2.VideoCapture`` opens."""
        return f"http://{LOOPBACK}:{self.port}{self.path}"

    def start(self) -> str:
        """Bind 127.0.0.1 and serve in a daemon thread; returns :attr:`url`."""
        if self._httpd is None:
            self._httpd = ThreadingHTTPServer((LOOPBACK, self._port), _handler(self))
            self._httpd.daemon_threads = True
            self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                            name="mjpeg-server", daemon=True)
            self._thread.start()
        return self.url

    def close(self) -> None:
        """Stop serving and close every connection. Idempotent."""
        self._closing.set()
        with self._cond:
            self._cond.notify_all()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5.0)
            self._httpd = None

    def __enter__(self) -> MJPEGServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- frames and faults --------------------------------------------------------------------
    def publish(self, frame: np.ndarray) -> None:
        """Send ``frame`` ((H, W) or (H, W, 3) uint8) to every client as the next JPEG."""
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(frame), [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise ValueError(f"camera server: cv2.imencode failed on a frame of shape {frame.shape}")
        jpeg = buf.tobytes()
        with self._cond:
            if self._corrupt > 0:
                self._corrupt -= 1
                self.stats["corrupted"] += 1
                body = self._rng.integers(0, 256, len(jpeg) - 4, dtype=np.uint8).tobytes()
                jpeg = b"\xff\xd8" + body.replace(b"\xff", b"\x00") + b"\xff\xd9"
            self._jpeg = jpeg
            self._seq += 1
            self.stats["published"] += 1
            self._cond.notify_all()

    def corrupt(self, n: int = 1) -> None:
        """Make the next ``n`` published frames undecodable JPEGs."""
        with self._cond:
            self._corrupt += int(n)

    def stall(self, on: bool = True) -> None:
        """Stop (or resume) sending frames, keeping the connections open."""
        with self._cond:
            self._stalled = bool(on)
            self._cond.notify_all()

    def _next(self, seq: int) -> tuple[int, bytes] | None:
        """The newest frame after ``seq`` (waits up to 0.5 s); None if none or closing."""
        with self._cond:
            self._cond.wait_for(lambda: self._closing.is_set() or (self._seq > seq and not self._stalled), 0.5)
            if self._closing.is_set() or self._stalled or self._seq <= seq or self._jpeg is None:
                return None
            return self._seq, self._jpeg


def _handler(server: MJPEGServer) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, fmt: str, *args: Any) -> None:     # quiet: no stderr per request
            log.debug("mjpeg-server: " + fmt, *args)

        def do_GET(self) -> None:
            if self.path.split("?")[0] != server.path:
                self.send_error(404, f"the stream is at {server.path}")
                return
            self.send_response(200)
            self.send_header("Cache-Control", "no-cache, private")
            self.send_header("Pragma", "no-cache")
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={_BOUNDARY}")
            self.end_headers()
            server.stats["clients"] += 1
            seq = server._seq
            try:
                while not server._closing.is_set():
                    item = server._next(seq)
                    if item is None:
                        continue
                    seq, jpeg = item
                    self.wfile.write(f"--{_BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                                     f"Content-Length: {len(jpeg)}\r\n\r\n".encode("ascii") + jpeg + b"\r\n")
                    self.wfile.flush()
                    server.stats["sent"] += 1
            except (BrokenPipeError, ConnectionResetError):
                pass

    return _Handler
