"""asyncio on top of the thread-safe client: every blocking call runs in
a worker thread (asyncio.to_thread), so the event loop never waits.

    from securer_client import Tool
    from securer_client.aio import AsyncClient

    async def main():
        async with await AsyncClient.connect() as client:
            s = await client.create_session()
            r = await s.execute("1 + 1")

A tool's fn may be a coroutine function: it runs on the event loop that
made the client. on_stdout/on_stderr callbacks are called on that loop too.
"""

import asyncio
import functools
import inspect

from .client import Client, Tool


def _on_loop(loop, fn):
    if fn is None:
        return None
    return lambda *a: loop.call_soon_threadsafe(fn, *a)


def _tools_on_loop(loop, tools):
    out = []
    for t in tools:
        if inspect.iscoroutinefunction(t.fn):
            fn = functools.partial(lambda f, *a: asyncio.run_coroutine_threadsafe(f(*a), loop).result(), t.fn)
            t = Tool(t.name, fn, t.args, t.description, t.timeout, t.plain)
        out.append(t)
    return out


class AsyncSession:
    def __init__(self, session, loop):
        self._s, self._loop = session, loop
        self.name, self.info = session.name, session.info

    async def execute(self, code, on_stdout=None, on_stderr=None, **kw):
        return await asyncio.to_thread(self._s.execute, code, on_stdout=_on_loop(self._loop, on_stdout),
                                       on_stderr=_on_loop(self._loop, on_stderr), **kw)

    def __getattr__(self, name):  # put_file, get_file, list_files, restart, status, close
        fn = getattr(self._s, name)
        return lambda *a, **kw: asyncio.to_thread(fn, *a, **kw)


class AsyncClient:
    def __init__(self, client):
        self.client = client
        self._loop = asyncio.get_running_loop()

    @classmethod
    async def connect(cls, *a, **kw):
        return cls(await asyncio.to_thread(Client.connect, *a, **kw))

    @classmethod
    async def connect_tcp(cls, *a, **kw):
        return cls(await asyncio.to_thread(Client.connect_tcp, *a, **kw))

    @classmethod
    async def open(cls, *a, **kw):
        return cls(await asyncio.to_thread(Client.open, *a, **kw))

    @classmethod
    async def spawn(cls, *a, **kw):
        return cls(await asyncio.to_thread(Client.spawn, *a, **kw))

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()

    async def close(self):
        await asyncio.to_thread(self.client.close)

    async def create_session(self, tools=(), **kw):
        s = await asyncio.to_thread(self.client.create_session, _tools_on_loop(self._loop, tools), **kw)
        return AsyncSession(s, self._loop)

    async def create_pool(self, size, tools=(), **kw):
        s = await asyncio.to_thread(self.client.create_pool, size, _tools_on_loop(self._loop, tools), **kw)
        return AsyncSession(s, self._loop)

    async def run(self, code, tools=(), on_stdout=None, on_stderr=None, **kw):
        return await asyncio.to_thread(self.client.run, code, _tools_on_loop(self._loop, tools),
                                       on_stdout=_on_loop(self._loop, on_stdout),
                                       on_stderr=_on_loop(self._loop, on_stderr), **kw)
