"""One archive as a child process (for kill -9 tests): ``python -m tests.archive.child DB_URL NATS_URL DATA_DIR``."""

from __future__ import annotations

import sys
from pathlib import Path

from services.archive.app import create_app
from veille.config import ArchiveConfig, VeilleConfig
from veille.logging import configure_logging
from veille.service import run_service
from veille.settings import ServiceSettings

if __name__ == "__main__":
    db_url, nats_url, data_dir, batch_size = sys.argv[1:5]
    settings = ServiceSettings(nats_url=nats_url, data_dir=Path(data_dir), http_port=0, log_format="json")
    configure_logging("archive", level="info", fmt="json")
    config = VeilleConfig(archive=ArchiveConfig(database_url=db_url, batch_size=int(batch_size)))
    run_service(create_app(settings, config=config), settings)
