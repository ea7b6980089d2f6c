"""The fault-injecting proxy itself, against a plain TCP echo server (real sockets, real time)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial

import pytest
import trio

from trio_mqtt.testing import FaultProxy, open_fault_proxy


async def _echo(stream: trio.SocketStream) -> None:
    try:
        async for data in stream:
            await stream.send_all(data)
    except trio.BrokenResourceError:
        pass


@pytest.fixture
async def proxy() -> AsyncIterator[FaultProxy]:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, _echo, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        async with open_fault_proxy("127.0.0.1", port) as fault_proxy:
            try:
                yield fault_proxy
            finally:
                while _OPENED:
                    await trio.aclose_forcefully(_OPENED.pop())
        nursery.cancel_scope.cancel()


_OPENED: list[trio.SocketStream] = []


async def _connect(proxy: FaultProxy) -> trio.SocketStream:
    stream = await trio.open_tcp_stream(proxy.host, proxy.port)
    _OPENED.append(stream)  # closed by the fixture
    return stream


async def _receive_exactly(stream: trio.SocketStream, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = await stream.receive_some(count - len(data))
        if not chunk:
            break
        data += chunk
    return data


async def _receive_until_closed(stream: trio.SocketStream) -> bytes:
    data = b""
    try:
        while chunk := await stream.receive_some(65536):
            data += chunk
    except trio.BrokenResourceError:
        pass
    return data


async def test_forwards_both_ways(proxy: FaultProxy) -> None:
    with trio.fail_after(5):
        stream = await _connect(proxy)
        await stream.send_all(b"hello")
        assert await _receive_exactly(stream, 5) == b"hello"
        assert proxy.statistics().active == 1
        await stream.aclose()
        await proxy.wait_idle()
        stats = proxy.statistics()
        assert (stats.accepted, stats.active, stats.bytes_up, stats.bytes_down) == (1, 0, 5, 5)
        assert stats.cuts == 0


async def test_cut_closes_both_sides_and_keeps_listening(proxy: FaultProxy) -> None:
    with trio.fail_after(5):
        stream = await _connect(proxy)
        await stream.send_all(b"x")
        assert await _receive_exactly(stream, 1) == b"x"
        assert proxy.cut() == 1
        assert await _receive_until_closed(stream) == b""
        again = await _connect(proxy)
        await again.send_all(b"y")
        assert await _receive_exactly(again, 1) == b"y"
        assert proxy.statistics().cuts == 1
        assert proxy.statistics().accepted == 2


async def test_reset_aborts_with_rst(proxy: FaultProxy) -> None:
    with trio.fail_after(5):
        stream = await _connect(proxy)
        await stream.send_all(b"x")
        assert await _receive_exactly(stream, 1) == b"x"
        proxy.reset()
        with pytest.raises(trio.BrokenResourceError):
            while await stream.receive_some(100):
                pass  # pragma: no cover


async def test_cut_after_lands_mid_message(proxy: FaultProxy) -> None:
    with trio.fail_after(5):
        stream = await _connect(proxy)
        await proxy.wait_accepted(1)
        proxy.cut_after(down=3)
        await stream.send_all(b"abcdefgh")
        assert await _receive_until_closed(stream) == b"abc"
        assert proxy.statistics().cuts == 1


async def test_cut_after_upstream_applies_to_the_next_link(proxy: FaultProxy) -> None:
    with trio.fail_after(5):
        proxy.cut_after(up=2)
        stream = await _connect(proxy)
        await stream.send_all(b"abcdefgh")
        assert (await _receive_until_closed(stream)) in (b"", b"a", b"ab")
        await proxy.wait_idle()
        assert proxy.statistics().bytes_up == 2


async def test_blackhole_holds_bytes_and_restore_releases_them(proxy: FaultProxy) -> None:
    with trio.fail_after(5):
        stream = await _connect(proxy)
        await stream.send_all(b"a")
        assert await _receive_exactly(stream, 1) == b"a"
        proxy.blackhole()
        await stream.send_all(b"held")
        with trio.move_on_after(0.3) as scope:
            await stream.receive_some(100)
        assert scope.cancelled_caught  # nothing comes back, and no error either
        assert proxy.statistics().active == 1
        proxy.restore()
        assert await _receive_exactly(stream, 4) == b"held"


async def test_split_writes_and_delay(proxy: FaultProxy) -> None:
    with trio.fail_after(5):
        stream = await _connect(proxy)
        proxy.split_writes = True
        proxy.delay = 0.05
        start = trio.current_time()
        await stream.send_all(b"0123456789")
        assert await _receive_exactly(stream, 10) == b"0123456789"
        assert trio.current_time() - start >= 0.1  # one delay each way at least


async def test_throttle_limits_the_rate(proxy: FaultProxy) -> None:
    with trio.fail_after(5):
        stream = await _connect(proxy)
        proxy.throttle = 2000.0  # bytes per second
        start = trio.current_time()
        await stream.send_all(b"z" * 400)
        assert await _receive_exactly(stream, 400) == b"z" * 400
        assert trio.current_time() - start >= 0.15  # 400 bytes at 2 kB/s: 0.2 s per direction


async def test_unreachable_upstream_closes_the_client() -> None:
    with trio.fail_after(5):
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        await listeners[0].aclose()  # nothing listens there any more
        async with open_fault_proxy("127.0.0.1", port) as fault_proxy:
            stream = await trio.open_tcp_stream(fault_proxy.host, fault_proxy.port)
            with stream.socket:
                assert await _receive_until_closed(stream) == b""
