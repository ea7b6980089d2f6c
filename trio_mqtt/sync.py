"""The synchronous API: a blocking client and connection for programs that do not use Trio.

Theory of operation. :func:`connect` starts one background thread that runs ``trio.run`` around
the same :func:`~trio_mqtt.open_mqtt_connection` the async API uses, and waits until the first
connection attempt is over (raising its error in the caller). The protocol state lives in that
thread only. Every blocking method crosses into it through the loop's
:class:`~trio.lowlevel.TrioToken` (a callback for a ``*_nowait`` call, a system task for a call
that waits, as :func:`trio.from_thread.run` does) and blocks the calling thread until the Trio
side answers, so any number of threads can use the API at once. The main thread waits in slices
of 0.1 s so that a Ctrl-C which lands just before it blocks is still noticed at once.

* A sync :class:`Client` wraps one async :class:`~trio_mqtt.Client` handle; :meth:`Client.clone`
  makes another in the Trio thread. When every handle is closed, the session ends with
  :class:`~trio_mqtt.RequestsDone` and iterating the :class:`Connection` ends cleanly.
* A sync :class:`Connection` reads events with ``MqttConnection.poll()``. Reads are serialised
  by a Trio lock, so several threads may read at once; ``recv_timeout`` bounds the wait in the
  Trio thread (cancelling ``poll()`` never loses an event) and ``try_recv`` only takes an event
  that is already buffered.
* The thread ends when the :class:`Connection` is closed, when iterating it reaches the end of
  the session (all handles closed, or ``Client.disconnect()``), or when the :class:`Connection`
  is garbage collected. A ``KeyboardInterrupt`` that arrives while the main thread is blocked in
  one of these calls closes the connection at once, joins the thread and is re-raised. After
  that, blocking calls raise :class:`~trio_mqtt.ConnectionClosed`.
"""

from __future__ import annotations

from ._sync._client import Client as Client
from ._sync._connection import Connection as Connection, connect as connect
from ._sync._loop import Tracker as Tracker

__all__ = ["Client", "Connection", "Tracker", "connect"]

# Document and report these under their public home.
for _public in (Client, Connection, Tracker, connect):
    _public.__module__ = __name__
del _public
