"""Running py-rattler's coroutines from synchronous code.

`asyncio.run()` refuses to start when the calling thread already runs an event loop,
which is the case in a Jupyter kernel: mlenv then runs the coroutine to completion on
a short-lived thread with its own loop, so `env.lock()` works in a notebook as it does
in a terminal."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


def run(make: Callable[[], Awaitable[T]]) -> T:
    """The result of the coroutine `make()` (a factory, so it is created on the loop
    that runs it)."""

    async def main() -> T:
        return await make()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    import threading

    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = asyncio.run(main())
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="mlenv-async", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"]
