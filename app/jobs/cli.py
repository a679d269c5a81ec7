"""`flask --app wsgi worker` (the job engine's worker) and `flask --app wsgi purge`."""

from __future__ import annotations

import json
import logging
import signal
import threading

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from app.registry import purge_plugins
from app.services.purge import Purge

log = logging.getLogger("usher.jobs")


@click.command("worker")
@click.option("--threads", type=int, default=None, help="Jobs run at once (default JOB_WORKER_THREADS, 4).")
@click.option("--sweep-every", type=float, default=60.0, show_default=True,
              help="Seconds between sweeps for deliveries that no message carries (broker was down).")
@with_appcontext
def worker_command(threads: int | None, sweep_every: float) -> None:
    """Run webhook deliveries from JOB_BROKER_URL until SIGTERM or SIGINT (Dramatiq worker)."""
    jobs = current_app.extensions["jobs"]
    if jobs.in_process:
        raise click.ClickException("JOB_BROKER_URL is not set: jobs run inside the app processes, "
                                   "there is nothing for a worker to take")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    worker = jobs.worker(threads or jobs.settings.job_worker_threads)
    worker.start()
    click.echo(f"worker started ({worker.worker_threads} threads)", err=True)
    try:
        while not stop.is_set():
            try:
                swept = jobs.sweep()
                if swept:
                    log.info("sent %d stranded deliveries again", swept)
            except Exception as exc:  # noqa: BLE001 - a database or broker hiccup must not end the worker
                log.warning("sweep failed: %s", type(exc).__name__)
            stop.wait(sweep_every)
    finally:
        worker.stop(timeout=15000)
        click.echo("worker stopped", err=True)


@click.command("purge")
@click.option("--batch-size", type=click.IntRange(1, 10000), default=500, show_default=True,
              help="Rows per transaction.")
@with_appcontext
def purge_command(batch_size: int) -> None:
    """Delete what nobody can use any more; print one JSON object of counts. Safe from cron while serving."""
    usher = current_app.extensions["usher"]
    now = usher.clock()
    counts: dict[str, int] = Purge(usher.db, now, usher.settings.guest_retention_days, batch_size).run()
    # Installed grants' tables (enabled or not: their rows outlive a switch-off), by their hooks.
    counts.update(purge_plugins(current_app.extensions["usher_registry"], usher.db, now, batch_size))
    click.echo(json.dumps(counts))


def register_job_commands(app: Flask) -> None:
    app.cli.add_command(worker_command)
    app.cli.add_command(purge_command)
