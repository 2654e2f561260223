"""``veille topology``: create or update every stream, consumer and KV bucket of ``veille.bus``.

Run it with the NATS admin user (``veille``) before the services, and again after an upgrade:
the services' own NATS users may only read the topology (``veille.natsauth``). docker compose
runs it as the one-shot ``nats-topology`` service every veille service waits for.
"""

from __future__ import annotations

import click

from veille_cli._imports import import_nats_for

__all__ = ["topology"]


@click.command()
@click.option("--nats-url", envvar="VEILLE_NATS_URL", default=None, help="NATS server URL(s).")
@click.option(
    "--replicas",
    envvar="VEILLE_STREAM_REPLICAS",
    type=click.IntRange(1, 5),
    default=1,
    show_default=True,
    help="JetStream replicas of every stream and bucket.",
)
def topology(nats_url: str | None, replicas: int) -> None:
    """Create or update veille's streams, consumers and KV buckets on NATS, then exit."""

    async def main() -> None:
        from veille import bus
        from veille.natsauth import connect_cli

        client = await connect_cli(nats_url)
        try:
            await bus.ensure_topology(client.jetstream(), replicas=replicas)
        finally:
            await client.close()

    import asyncio

    import_nats_for(nats_url)
    asyncio.run(main())
    click.echo(f"NATS topology ready: {len(bus_names())} streams and buckets, replicas={replicas}")


def bus_names() -> list[str]:
    """Names of veille's streams and buckets."""
    from veille import bus

    return [s.name for s in bus.STREAMS] + [b.name for b in bus.BUCKETS]
