"""Production settings are safe by default."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_check(env_extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env.update({"DJANGO_SETTINGS_MODULE": "config.settings.production", **env_extra})
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_refuses_to_start_without_a_secret_key():
    result = run_check({"SECRET_KEY": ""})

    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_production_passes_the_deploy_check_with_a_real_secret(tmp_path):
    result = run_check(
        {
            "SECRET_KEY": "x" * 20 + "q7!Zr9#Lm2@Vb5$Nc8%Xa1^Ks4&Dw6*Fe3",
            "AURUM_VAR_DIR": str(tmp_path),
        }
    )

    assert result.returncode == 0, result.stdout + result.stderr
