"""The ASGI lifespan protocol: what the server tells the app before it exits.

uvicorn stops like this on SIGTERM: it finishes the requests in flight, sends
``lifespan.shutdown``, then raises the signal again with its default handler,
so the process dies of it and ``atexit`` hooks never run. The usage records
still buffered (and a multiprocess metrics file) are therefore handled here;
under Daphne, which has no lifespan and exits normally, the ``atexit`` hooks
in llmproxy.gateway.usage and llmproxy.metrics do the same.
"""

import asyncio
import logging
import os

from providers import http

logger = logging.getLogger(__name__)


async def lifespan(scope, receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await _shut_down()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _shut_down():
    from llmproxy import metrics
    from llmproxy.gateway.usage import recorder

    try:
        written = await asyncio.to_thread(recorder.flush, True)
        if written:
            logger.info("wrote %d usage records before exiting", written)
    except Exception:
        logger.exception("usage records could not be written before exiting; %d kept", recorder.backlog())
    await http.close()
    if metrics.MULTIPROCESS:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid())
