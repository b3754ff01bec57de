"""`llmtp config show|get|set|unset`: the effective settings, where each came from, and config.toml edits."""

from __future__ import annotations

import typer

config_app = typer.Typer(
    help="Show and change llmtp's settings (config.toml; docs/configuration.md).", no_args_is_help=True
)


def _keys(incomplete: str) -> list[str]:
    from llmtp.settings import Settings

    return [k for k in Settings.model_fields if k.startswith(incomplete)]


@config_app.command("show")
def show(json_out: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Print every setting, its value and its origin (flag, env, file or default)."""
    from llmtp.cli._out import console, emit_json
    from llmtp.settings import load_settings

    loaded = load_settings()
    values = loaded.settings.model_dump(mode="json")
    if json_out:
        emit_json(
            {
                "config_file": str(loaded.settings.config_file),
                "settings": {k: {"value": v, "origin": loaded.origins[k]} for k, v in values.items()},
            }
        )
        return
    con = console(markup=False)
    con.print(f"config file: {loaded.settings.config_file}")
    con.print(settings_table(values, loaded.origins))


def settings_table(values: dict, origins: dict):  # -> cli._out table
    """Setting names and values (paths) are typed back: never cut. The config file's path is said once
    above the table, so a value from it shows `file`."""
    from llmtp.cli._out import table

    t = table("setting", "value", "origin", whole=("setting", "value"))
    for key, value in values.items():
        origin = origins[key]
        t.add_row(key, "null" if value is None else str(value), "file" if origin.startswith("file ") else origin)
    return t


@config_app.command("get")
def get(
    key: str = typer.Argument(..., help="A setting, as `llmtp config show` lists them.", autocompletion=_keys),
    json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Print one setting's effective value (flag, env, file or default)."""
    from llmtp.cli._out import emit_json
    from llmtp.services.config.edit import check_key
    from llmtp.settings import Settings, load_settings

    if key not in Settings.model_fields:
        check_key(key)
    loaded = load_settings()
    value = loaded.settings.model_dump(mode="json")[key]
    if json_out:
        emit_json({"key": key, "value": value, "origin": loaded.origins[key]})
        return
    typer.echo("null" if value is None else str(value))


@config_app.command("set")
def set_(
    key: str = typer.Argument(..., help="A setting (docs/configuration.md).", autocompletion=_keys),
    value: str = typer.Argument(..., help="Its new value, checked as the setting's type and bounds."),
    json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Write KEY = VALUE to config.toml, validated first; other keys and comments stay as written."""
    import os

    from llmtp.cli._out import emit_json
    from llmtp.services.config.edit import set_value

    path, written = set_value(key, value, os.environ)
    if json_out:
        emit_json({"config_file": str(path), "key": key, "value": written})
        return
    from llmtp.core.toml_edit import toml_value

    typer.echo(f"{key} = {toml_value(written)} in {path}")
    _shadowed(key)


@config_app.command("unset")
def unset(
    key: str = typer.Argument(..., help="A setting (docs/configuration.md).", autocompletion=_keys),
    json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Remove KEY from config.toml: it takes its default again (or an LLMTP_* variable's value)."""
    import os

    from llmtp.cli._out import emit_json
    from llmtp.services.config.edit import unset_value

    path, found = unset_value(key, os.environ)
    if json_out:
        emit_json({"config_file": str(path), "key": key, "removed": found})
        return
    typer.echo(f"removed {key} from {path}" if found else f"{key} was not set in {path}: nothing to do")
    _shadowed(key)


def _shadowed(key: str) -> None:
    """Say so when an LLMTP_* variable overrides what the file now says."""
    import os

    from llmtp.settings import ENV_PREFIX

    if f"{ENV_PREFIX}{key.upper()}" in os.environ:
        typer.echo(f"note: {ENV_PREFIX}{key.upper()} is set in the environment and wins over config.toml", err=True)


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")
