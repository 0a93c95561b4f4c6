"""`ops/serve.sh` installs only the runtime: the embedded default must start without any distributed driver."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BLOCK = "pymongo", "gridfs", "aiokafka", "kafka", "faust", "mode", "redis"

SCRIPT = f"""
import asyncio, sys
for name in {BLOCK!r}:
    sys.modules[name] = None  # any import of it now raises ImportError
import ops.cli  # the console script's module, with every command registered
from snapfix.app import create_app
from snapfix.settings import Settings

async def main(folder):
    settings = Settings(event_log=f"sqlite:///{{folder}}/e.db", view_store=f"sqlite:///{{folder}}/v.db",
                        blob_store=f"file://{{folder}}/blobs", argon2_time_cost=1, argon2_memory_kib=64)
    app = create_app(settings, "all")
    async with app.router.lifespan_context(app):
        pass

asyncio.run(main(sys.argv[1]))
print("embedded ok")
"""


class TestEmbeddedDefault:
    def test_the_cli_and_the_one_process_app_start_without_kafka_mongo_or_redis_drivers(self, tmp_path: Path) -> None:
        """Importing the CLI and running the embedded app's start-up and shutdown never touches those drivers."""
        result = subprocess.run(
            [sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, check=False, timeout=120
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert "embedded ok" in result.stdout
