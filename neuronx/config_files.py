"""Reading the JSON/YAML configuration files the internal team installs with commands."""

import json
from pathlib import Path
from typing import Any

import yaml
from django.core.management.base import CommandError

YAML_SUFFIXES = (".yaml", ".yml")


def config_file_load(path: Path) -> Any:
    """Parse `path` as YAML (.yaml/.yml) or JSON; `CommandError` says precisely what is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"Cannot read {path}: {exc}") from None
    if path.suffix.lower() in YAML_SUFFIXES:
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise CommandError(f"{path} is not valid YAML: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(
            f"{path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}."
        ) from None
