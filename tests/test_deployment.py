"""The production description must at least parse and validate offline."""

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_docker_compose_file_validates(tmp_path):
    compose = shutil.which("docker-compose")
    assert compose, "docker-compose (Debian package) is needed: make system-deps installs it"
    # The services read .env beside the compose file: validate a copy next to the example.
    shutil.copy(ROOT / "docker-compose.yml", tmp_path / "docker-compose.yml")
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")
    result = subprocess.run(
        [compose, "-f", str(tmp_path / "docker-compose.yml"), "config", "--services"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) == {"postgres", "redis", "web", "gateway", "worker", "beat"}
