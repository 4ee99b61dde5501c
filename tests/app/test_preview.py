"""A stream's preview picture is rendered once per tick however many watch it, the pictures of closed streams are
let go once they have ended, and a stream's MJPEG viewers are capped."""

from __future__ import annotations

import asyncio

import pytest

from app.errors import ErrorCode, ServiceError
from app.streams import preview
from app.streams.preview import MAX_VIEWERS, Previews


class _Stream:
    def __init__(self, stream_id: str) -> None:
        self.id = stream_id
        self.ended = False


@pytest.fixture
def renders(monkeypatch) -> list[str]:
    rendered: list[str] = []

    def render(stream, names, thresholds):
        rendered.append(stream.id)
        return f"jpeg of {stream.id} #{len(rendered)}".encode()

    monkeypatch.setattr(preview, "render", render)
    return rendered


def test_viewers_arriving_together_share_one_rendering(renders):
    previews, stream = Previews(), _Stream("a")

    async def ten_viewers():
        return await asyncio.gather(*(previews.picture("a", stream, [], []) for _ in range(10)))

    pictures = asyncio.run(ten_viewers())
    assert len(set(pictures)) == 1 and len(renders) <= 2  # 2 only when a tick boundary falls in between


def test_a_new_tick_renders_a_new_picture_and_closed_streams_are_forgotten(renders, monkeypatch):
    previews, now = Previews(), [100.0]
    monkeypatch.setattr(preview.time, "monotonic", lambda: now[0])

    stream = _Stream("a")

    async def run():
        first = await previews.picture("a", stream, [], [])
        assert await previews.picture("a", stream, [], []) == first  # the same tick
        now[0] += 1 / preview.PREVIEW_FPS
        second = await previews.picture("a", stream, [], [])
        stream.ended = True
        await previews.picture("b", _Stream("b"), [], [])  # a has ended by now
        return first, second

    first, second = asyncio.run(run())
    assert first != second and renders == ["a", "a", "b"]
    assert list(previews._latest) == ["b"]


def test_viewers_per_stream_are_capped():
    previews = Previews()
    watching = [previews.viewer("a") for _ in range(MAX_VIEWERS)]
    for viewer in watching:
        viewer.__enter__()
    with pytest.raises(ServiceError) as refused:
        previews.check_room("a")
    assert refused.value.code is ErrorCode.TOO_MANY_VIEWERS
    previews.check_room("b")  # another stream has room
    watching[0].__exit__(None, None, None)
    previews.check_room("a")  # one left: room again
