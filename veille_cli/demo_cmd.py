"""``veille demo``: ``veille up`` on a scripted crisis played by a loopback feed, no network needed."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from veille_cli.up_cmd import stack_options

if TYPE_CHECKING:
    from nats.js import JetStreamContext

__all__ = ["demo"]


@click.command()
@stack_options(Path("var/demo"), "Where the demo's NATS store, mail, webhooks and logs go.")
@click.option("--feed-port", type=int, default=0, help="Port of the demo feed (default: any free port).")
def demo(
    data_dir: Path,
    nats_port: int,
    nats_url: str | None,
    smtp_port: int,
    webhook_port: int,
    metrics_port: int,
    feed_port: int,
    quiet: bool,
) -> None:
    """Watch a crisis unfold: veille up on a scripted feed about a fictional brewery, offline.

    A feed on 127.0.0.1 plays, in French and English, a calm minute about Brasserie Lumen, then a
    surge of angry mentions and syndicated copies of a recall story, then a recovery. Within two
    minutes the real pipeline raises a spike alert and negative-mention alerts: see
    DATA_DIR/webhooks/brasserie-lumen.jsonl and the mails in DATA_DIR/mail. Ctrl-C stops it.
    """
    from veille.demo import WATCH, DemoFeedServer, demo_config
    from veille_cli.up_cmd import Stack, run_stack

    data_dir = data_dir.resolve()
    feed = DemoFeedServer(port=feed_port)
    config_path = data_dir / "demo.yaml"
    data_dir.mkdir(parents=True, exist_ok=True)
    config_path.write_text(demo_config(feed.url), encoding="utf-8")

    async def forget_last_run(js: JetStreamContext) -> None:
        """Start the watch's detectors afresh, so a second demo in the same directory warms up again."""
        from nats.js.errors import NoKeysError

        from veille import bus

        kv = await js.key_value(bus.DETECTOR.name)
        try:
            keys = await kv.keys()
        except NoKeysError:
            return
        for key in keys:
            if key == f"w.{WATCH}.state" or key.startswith(f"c.{WATCH}."):
                await kv.purge(key)

    feed.start()
    click.echo(
        f"veille demo: the crisis feed is {feed.url}; alerts go to {data_dir / 'webhooks' / WATCH}.jsonl "
        f"and {data_dir / 'mail'}/*.eml (the spike comes about 90 s after the services start)",
        err=True,
    )
    try:
        run_stack(
            Stack(config_path, data_dir, nats_port, nats_url, smtp_port, webhook_port, metrics_port),
            quiet=quiet,
            prepare=forget_last_run,
            command="demo",
        )
    finally:
        feed.stop()
