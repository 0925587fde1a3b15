"""Train the Rasa model only when its inputs changed: models are named by a fingerprint of
``config.yml``, ``domain.yml`` and ``data/`` (and the Rasa version)."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
from pathlib import Path

from bot.errors import PromptlyError
from bot.settings import Settings

logger = logging.getLogger(__name__)
RASA_VERSION = "3.6.21"
TRAINING_INPUTS = ("config.yml", "domain.yml", "data")


class TrainingError(PromptlyError):
    pass


def fingerprint(root: Path) -> str:
    digest = hashlib.sha256(RASA_VERSION.encode())
    for name in TRAINING_INPUTS:
        path = root / name
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            if not file.exists():
                raise TrainingError(f"training input {file} is missing")
            digest.update(str(file.relative_to(root)).encode() + b"\0")
            digest.update(file.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def model_path(settings: Settings) -> Path:
    name = f"promptly-{fingerprint(settings.path(settings.rasa.project))}.tar.gz"
    return settings.path(settings.rasa.model_dir) / name


def rasa_executable(settings: Settings) -> Path:
    rasa = settings.path(settings.rasa.venv) / "bin" / "rasa"
    if not rasa.exists():
        raise TrainingError(f"{rasa} not found: run `make setup` to create the Rasa environment")
    return rasa


def rasa_env() -> dict[str, str]:
    """Environment for Rasa processes: offline, quiet, and one TF thread pool per op so the
    gateway keeps a core on small machines."""
    env = dict(os.environ)
    env.update(
        {
            "RASA_TELEMETRY_ENABLED": "false",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "TF_INTER_OP_PARALLELISM_THREADS": "1",
            "TF_INTRA_OP_PARALLELISM_THREADS": "1",
            "SQLALCHEMY_SILENCE_UBER_WARNING": "1",
            "PYTHONWARNINGS": "ignore",
        }
    )
    return env


def train(settings: Settings, *, force: bool = False) -> Path:
    """Return the model for the current inputs, training it first if it does not exist."""
    target = model_path(settings)
    if target.exists() and not force:
        logger.info("model %s is up to date", target.name)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    command = [
        str(rasa_executable(settings)),
        "train",
        "--config",
        "config.yml",
        "--domain",
        "domain.yml",
        "--data",
        "data",
        "--out",
        str(target.parent),
        "--fixed-model-name",
        target.name.removesuffix(".tar.gz"),
    ]
    log = target.parent / "train.log"
    logger.info("training the Rasa model %s (a minute or two; progress in %s)", target.name, log)
    with log.open("w", encoding="utf-8") as out:
        result = subprocess.run(
            command,
            cwd=settings.path(settings.rasa.project),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=rasa_env(),
        )
    if result.returncode != 0 or not target.exists():
        tail = "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-30:])
        raise TrainingError(f"rasa train failed (exit {result.returncode}); end of {log}:\n{tail}")
    return target
