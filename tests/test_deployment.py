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
    assert set(result.stdout.split()) == {
        "postgres",
        "rabbitmq",
        "redis",
        "web",
        "gateway1",
        "gateway2",
        "haproxy",
        "worker",
        "beat",
        "meters",
        "power",
    }


def test_compose_runs_every_process_on_rabbitmq_and_two_gateways_behind_haproxy(tmp_path):
    compose = shutil.which("docker-compose")
    assert compose, "docker-compose (Debian package) is needed: make system-deps installs it"
    shutil.copy(ROOT / "docker-compose.yml", tmp_path / "docker-compose.yml")
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")
    (tmp_path / "deploy").mkdir()
    shutil.copy(ROOT / "deploy" / "haproxy.cfg", tmp_path / "deploy" / "haproxy.cfg")
    result = subprocess.run(
        [compose, "-f", str(tmp_path / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    # The resolved configuration (anchors expanded): every Sparklin process (web, two
    # gateways, worker, beat, meters, the power controller) gets the RabbitMQ broker.
    resolved = result.stdout
    assert resolved.count("CELERY_BROKER_URL: amqp://sparklin:") == 7
    assert resolved.count("condition: service_healthy") >= 21  # each waits for pg, mq, redis
    assert "9000:9000" in resolved or "published: 9000" in resolved
    haproxy = (ROOT / "deploy" / "haproxy.cfg").read_text()
    assert "balance leastconn" in haproxy and "timeout tunnel" in haproxy
    servers = [
        line.split()[1] for line in haproxy.splitlines() if line.strip().startswith("server ")
    ]
    assert servers == ["gateway1", "gateway2"]
    assert "check" in haproxy
