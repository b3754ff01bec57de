"""`llmtp config show`: the effective settings and where each value came from."""

from __future__ import annotations

import typer

config_app = typer.Typer(help="Show llmtp's effective settings.", no_args_is_help=True)


@config_app.command("show")
def show(json_out: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Print every setting, its value and its origin (flag, env, file or default)."""
    from llmtp.cli._out import console, emit_json
    from llmtp.settings import load_settings

    loaded = load_settings()
    values = loaded.settings.model_dump(mode="json")
    if json_out:
        emit_json({"config_file": str(loaded.settings.config_file),
                   "settings": {k: {"value": v, "origin": loaded.origins[k]} for k, v in values.items()}})
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


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")
