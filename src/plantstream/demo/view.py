"""The demo's live terminal view: readings in and out per second, stream lag, alerts."""

from __future__ import annotations

import threading
import time
from collections import Counter

import psycopg
from rich.console import Console
from rich.live import Live
from rich.table import Table

from plantstream.demo import books
from plantstream.simulate import LoadStats
from plantstream.store.alerts import count_open

POLL_S = 2.0  # how often the view reads the processor's books and the open alerts


class LiveView:
    def __init__(
        self,
        console: Console,
        *,
        database_url: str,
        stats: LoadStats,
        started: float,
        baseline: Counter[str],
    ) -> None:
        self.console = console
        self.database_url = database_url
        self.stats = stats
        self.started = started
        self.baseline = baseline  # the books once earlier runs' leftovers were caught up
        self._stored = 0  # the processor runs in a process of its own: from its books
        self._last = (time.monotonic(), 0, 0)
        self._rates = (0.0, 0.0)
        self._open_alerts = 0
        self._dead = 0

    def _poll_database(self) -> Counter[str]:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            self._open_alerts = count_open(conn=conn)
            return books.since(conn, self.baseline)

    def _table(self) -> Table:
        now = time.monotonic()
        accepted, stored = self.stats.accepted, self._stored
        last_t, last_in, last_out = self._last
        if now - last_t >= POLL_S:  # stored moves once a poll: rates over as long
            self._rates = (
                (accepted - last_in) / (now - last_t),
                (stored - last_out) / (now - last_t),
            )
            self._last = (now, accepted, stored)
        table = Table(title="plantstream demo (Ctrl-C to stop)", show_header=False, box=None)
        table.add_column(style="dim")
        table.add_column(justify="right")
        table.add_row("elapsed", f"{time.time() - self.started:,.0f} s")
        table.add_row("readings in", f"{self._rates[0]:,.0f}/s  ({accepted:,} accepted)")
        table.add_row("readings out", f"{self._rates[1]:,.0f}/s  ({stored:,} stored)")
        table.add_row("stream lag", f"{max(0, accepted - stored - self._dead):,} readings")
        table.add_row("rejected at ingest", f"{self.stats.rejected:,}")
        table.add_row("open alerts", f"{self._open_alerts}")
        table.add_row("retries", f"{self.stats.retries:,}")
        return table

    def follow(self, simulator: threading.Thread, *, live: bool = True) -> None:
        """Show progress until the simulator thread ends."""
        polled = 0.0
        with Live(
            self._table(),
            console=self.console,
            refresh_per_second=4,
            transient=False,
            auto_refresh=False,
            redirect_stdout=False,
        ) as view:
            while simulator.is_alive():
                simulator.join(timeout=0.5)
                if time.monotonic() - polled > POLL_S:
                    counters = self._poll_database()
                    self._dead = counters["rejected"]
                    self._stored = counters["stored"]
                    polled = time.monotonic()
                if live:
                    view.update(self._table(), refresh=True)
            view.update(self._table(), refresh=True)
