"""The processor's PostgreSQL connections: one small psycopg_pool pool owns their life (check on
checkout, replace broken ones, create each session's staging tables once).
"""

from __future__ import annotations

from collections.abc import Callable

from psycopg_pool import ConnectionPool

from plantstream.store.batches import create_session_tables

Conninfo = str | Callable[[], str]
CHECKOUT_TIMEOUT_S = 5.0  # PostgreSQL away: fail the step soon, back off, keep stop responsive
# after this long failing, a pool slot gives up and the next checkout starts a fresh attempt:
# psycopg_pool's own reconnect delay doubles from 1 s and would lag a restart by up to as much
RECONNECT_TIMEOUT_S = 10.0


def processor_pool(conninfo: Conninfo, *, name: str = "processor") -> ConnectionPool:
    """A pool of two autocommit connections: the loop's and the prefetch thread's.

    A callable ``conninfo`` is asked again for every new connection, so rotated credentials
    (``aws.CredentialSource``) and a server that moved (an embedded one restarted on another
    port) are followed. The pool is opened without waiting: a processor starts while
    PostgreSQL is still away, and its loop retries.
    """
    pool = ConnectionPool(
        conninfo,
        min_size=2,
        max_size=2,
        name=name,
        open=False,
        kwargs={"autocommit": True},
        configure=create_session_tables,
        check=ConnectionPool.check_connection,
        timeout=CHECKOUT_TIMEOUT_S,
        reconnect_timeout=RECONNECT_TIMEOUT_S,
        num_workers=1,
    )
    pool.open(wait=False)
    return pool
