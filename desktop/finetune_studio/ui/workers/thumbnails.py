"""UI layer: small previews of many pictures, decoded off the GUI thread and cached.

A gallery asks for the thumbnail of each tile it paints, that is of the visible tiles
only. A thumbnail not in the cache yet is queued and ``thumbnail()`` answers None
at once; the tile paints a placeholder and is repainted when it arrives.

Why not ``TaskRunner``: that starts a thread per task, made for a few long jobs with
progress and cancel. Thumbnails are thousands of jobs of a few milliseconds, so a
small pool of plain Python threads decodes them with the engine's ``load_rgb`` (the
same decoder training uses: EXIF orientation, every mode made RGB, large JPEGs
decoded at reduced scale). The workers touch no Qt object at all: they append
``(path, pixels)`` to a deque, and a timer of this object, living in the GUI thread,
takes what has arrived (the way ``Task`` takes progress, see tasks.py), makes the
pixmaps there (``QPixmap`` belongs to the GUI thread) and announces one batch. A fast
scroll then costs one repaint per batch, not one per picture.

Only the most recent requests are kept (``MAX_WAITING``): after a fling through
5,000 pictures, the tiles now on screen come first and those scrolled past are
dropped; they are asked for again if they are painted again.

``forget()`` (pictures were moved: a path may now hold another picture) cannot stop
a decode that is already running, so every decode carries the generation it was
started in, and ``forget()`` starts a new one: a result from an older generation is
dropped when it arrives, and a path asked for again after ``forget()`` is decoded
again, from the file as it is now.
"""

from __future__ import annotations

import os
from collections import OrderedDict, deque
from concurrent.futures import Future, ThreadPoolExecutor

from PySide6.QtCore import QObject, QTimer, Signal, Slot
from PySide6.QtGui import QImage, QPixmap

THUMBNAIL_SIZE = 128
MAX_WAITING = 256  # requests kept, newest first: a few screens of tiles
CACHE_BYTES = 96 * 1024 * 1024  # about 1,500 thumbnails of 128 x 128
POLL_MS = 25  # decoded thumbnails reach the view in batches, at most 40 a second

Pixels = tuple[bytes, int, int] | None
"""RGB888 bytes, width and height; None for a file that cannot be shown."""


def decode_thumbnail(path: str, size: int) -> Pixels:
    """Runs in a worker thread. Any failure gives None (a placeholder): a missing or
    broken file is something to see in the gallery, not an error to report."""
    from ...engine.images import load_rgb

    try:
        image = load_rgb(path, size)
        image.thumbnail((size, size))
        return image.tobytes(), image.width, image.height
    except Exception:  # the thread boundary: whatever the file holds, it is not shown
        return None


class ThumbnailLoader(QObject):
    """Thumbnails by path: cached, or decoded in the background on request."""

    thumbnails_arrived = Signal(list)  # paths whose thumbnail (or failure) is now known

    def __init__(
        self,
        size: int = THUMBNAIL_SIZE,
        cache_bytes: int = CACHE_BYTES,
        workers: int | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.size = size
        self.cache_bytes = cache_bytes
        self.workers = workers or max(1, min(4, (os.cpu_count() or 2) - 1))
        self._cache: OrderedDict[str, QPixmap | None] = OrderedDict()  # None: broken
        self._cached_bytes = 0
        self._waiting: OrderedDict[str, None] = OrderedDict()  # the newest last
        self._in_flight: dict[str, Future[None]] = {}  # of this generation only
        self._done: deque[tuple[int, str, Pixels]] = deque()  # appended by the workers
        self._generation = 0  # bumped by forget(): older decodes are dropped on arrival
        self._pool: ThreadPoolExecutor | None = None
        self._poll = QTimer(self)
        self._poll.setInterval(POLL_MS)
        self._poll.timeout.connect(self._on_poll_timeout)

    # --- asking ---------------------------------------------------------------------------
    def thumbnail(self, path: str) -> QPixmap | None:
        """The cached thumbnail, or None while it is being decoded (then it is asked
        for). ``is_broken(path)`` tells a file that cannot be shown."""
        if path in self._cache:
            self._cache.move_to_end(path)
            return self._cache[path]
        self.request(path)
        return None

    def is_broken(self, path: str) -> bool:
        return path in self._cache and self._cache[path] is None

    def is_pending(self, path: str) -> bool:
        return path in self._waiting or path in self._in_flight

    def request(self, path: str) -> None:
        if path in self._cache or path in self._in_flight:
            return
        self._waiting[path] = None
        self._waiting.move_to_end(path)
        while len(self._waiting) > MAX_WAITING:
            self._waiting.popitem(last=False)  # scrolled past long ago
        self._dispatch()

    def forget(self) -> None:
        """Drop everything cached, waiting or being decoded (pictures were moved or
        replaced): decodes not started yet are cancelled, those running finish on
        their own and their results are dropped (an older generation's)."""
        self._generation += 1
        self._cache.clear()
        self._cached_bytes = 0
        self._waiting.clear()
        for future in self._in_flight.values():
            future.cancel()
        self._in_flight.clear()

    def shutdown(self) -> None:
        """Stop decoding: what is waiting is dropped, what is running ends on its own
        within milliseconds. Never blocks."""
        self._generation += 1
        self._waiting.clear()
        self._poll.stop()
        self._stop_pool()
        self._in_flight.clear()

    def _stop_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    @property
    def busy(self) -> bool:
        return bool(self._waiting or self._in_flight)

    # --- decoding -------------------------------------------------------------------------
    def _dispatch(self) -> None:
        """Keep every worker busy with the newest requests, and no more queued than that:
        the rest wait here, where a newer request can still overtake them."""
        while self._waiting and len(self._in_flight) < 2 * self.workers:
            path, _ = self._waiting.popitem(last=True)
            future = self._executor().submit(self._decode, path, self._generation)
            self._in_flight[path] = future
        if self._in_flight and not self._poll.isActive():
            self._poll.start()

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="thumbnails")
        return self._pool

    def _decode(self, path: str, generation: int) -> None:
        """Runs in a worker thread: ``generation`` is the one it was started in."""
        self._done.append((generation, path, decode_thumbnail(path, self.size)))

    @Slot()
    def _on_poll_timeout(self) -> None:
        arrived = []
        while self._done:  # deque.popleft is atomic: the workers may append meanwhile
            generation, path, pixels = self._done.popleft()
            if generation != self._generation or self._in_flight.pop(path, None) is None:
                continue  # forgotten or shut down meanwhile: perhaps of another picture
            self._store(path, pixels)
            arrived.append(path)
        self._dispatch()
        if not self._in_flight:
            self._poll.stop()
            self._stop_pool()  # idle: its threads end (a new pool starts on demand)
        if arrived:
            self.thumbnails_arrived.emit(arrived)

    def _store(self, path: str, pixels: Pixels) -> None:
        pixmap = None
        if pixels is not None:
            data, width, height = pixels
            image = QImage(data, width, height, 3 * width, QImage.Format.Format_RGB888)
            pixmap = QPixmap.fromImage(image)  # copies the pixels: ``data`` may go
            self._cached_bytes += 4 * width * height
        self._cache[path] = pixmap
        while self._cached_bytes > self.cache_bytes and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            if old is not None:
                self._cached_bytes -= 4 * old.width() * old.height()
