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
    from rich.table import Table

    table = Table("setting", "value", "origin", title=f"config file: {loaded.settings.config_file}")
    for key, value in values.items():
        table.add_row(key, "null" if value is None else str(value), loaded.origins[key])
    console().print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")
