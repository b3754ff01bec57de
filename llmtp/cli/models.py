"""`llmtp models list|show|pull|rm|check`: the catalog, downloads, and the catalog against the hub."""

from __future__ import annotations

import typer

from llmtp.cli._complete import model_names

models_app = typer.Typer(help="Model catalog and downloads.", no_args_is_help=True)


@models_app.command("list")
def list_(
    json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
    local: bool = typer.Option(
        False,
        "--local",
        help="List the model files on disk (HF cache, LLAMA_CACHE, llmtp's pulls) instead of the catalog.",
    ),
) -> None:
    """List catalog aliases, how MTP is carried, and whether a file is present."""
    from llmtp.cli._out import console, emit_json
    from llmtp.services.models.resolve import list_models
    from llmtp.settings import load_settings

    if local:
        _list_local(json_out)
        return
    rows = list_models(load_settings().settings)
    if json_out:
        emit_json(rows)
        return
    console(markup=False).print(catalog_table(rows))


def catalog_table(rows: list[dict]):  # -> cli._out table
    """The alias (what `serve`/`pull` take) is never cut; the rest wraps at word boundaries."""
    from llmtp.cli._out import table

    t = table("alias", "name", "mtp", "quants", "default", "local", whole=("alias",))
    for r in rows:
        t.add_row(
            r["alias"], r["name"], r["mtp"], " ".join(r["quants"]), r["default_quant"], ", ".join(r["local"]) or "-"
        )
    return t


@models_app.command("show")
def show(
    alias: str = typer.Argument(..., help="Catalog alias.", autocompletion=model_names),
    json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Show one catalog entry: repos, quants and sizes, MTP, license and architecture numbers."""
    from llmtp.cli._out import console, emit_json
    from llmtp.services.models.catalog import load_catalog, lookup

    entry = lookup(load_catalog(), alias)
    if json_out:
        emit_json(entry)
        return
    c = console(markup=False)  # all of it is data
    c.print(f"{entry.alias}: {entry.name}\n  {entry.description}")
    c.print(f"  source: {', '.join(entry.repos) or 'PyPI ' + entry.package.distribution}")  # type: ignore[union-attr]
    c.print(f"  MTP: {entry.mtp}" + (f" (sidecar {entry.sidecar})" if entry.sidecar else ""))
    for repo, how in entry.repo_mtp.items():
        c.print(f"  MTP in {repo}: {how.mtp}" + (f" (sidecar {how.sidecar}, Q8_0 unless asked)" if how.sidecar else ""))
    c.print(f"  license: {entry.license} - {entry.license_note}")
    for q in entry.quants:
        size, est = entry.estimated_size_bytes(q)
        text = "unknown" if size is None else f"{size / 1e9:.1f} GB" + (" (estimated)" if est else "")
        c.print(
            f"  {q.name:<8} {text:<20} {q.file}"
            + (f"  (only in {q.repo})" if q.repo else "")
            + ("  (default)" if q.name == entry.default_quant else "")
        )
    arch = {k: v for k, v in entry.arch.model_dump().items() if v is not None}
    c.print("  arch: " + ", ".join(f"{k}={v}" for k, v in arch.items()))


@models_app.command("pull")
def pull(
    ref: str = typer.Argument(
        ..., help="Alias, org/repo:QUANT, hf.co/org/repo:QUANT or hf:org/repo:QUANT.", autocompletion=model_names
    ),
    quant: str = typer.Option(None, "--quant", "-q", help="Quant to download (default: the catalog's)."),
    draft_quant: str = typer.Option(None, "--draft-quant", help="Quant of a separate MTP draft file (default: Q8_0)."),
    json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Download a model (and its MTP sidecar) into the shared HF cache, then verify it."""
    from llmtp.cli._out import console, emit_json, esc, human_bytes
    from llmtp.services.models.pulls import pull as do_pull
    from llmtp.settings import load_settings

    err = console(stderr=True)
    result = do_pull(
        ref,
        load_settings().settings,
        quant=quant,
        draft_quant=draft_quant,
        on_progress=lambda m: err.print(m, markup=False),
    )
    for w in result.warnings:
        err.print(f"[bold red]{esc(w)}[/]")
    if json_out:
        emit_json(result)
        return
    c = console(markup=False)  # all of it is data
    checked = "verified" if result.sha256_verified else "not given by the hub"
    c.print(f"{result.path} ({human_bytes(result.size_bytes)}, sha256 {checked})")
    if result.revision:
        c.print(f"from {result.repo} at revision {result.revision[:12]}")
    if result.file_choice:
        c.print(f"file: {result.file_choice}")
    c.print(
        f"MTP heads: {result.nextn_predict_layers} nextn layer(s)"
        + (f"; sidecar {result.sidecar_path}" if result.sidecar_path else "")
    )
    if result.sidecar_choice:
        c.print(f"MTP draft: {result.sidecar_choice}")


@models_app.command("check")
def check(
    alias: str = typer.Argument(None, help="Catalog alias (default: every entry)."),
    json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Compare the catalog with the hub: files exist, sizes within 1%, MTP marker in the remote header.

    Exits 1 when anything differs; needs the hub (offline it says so and exits non-zero)."""
    from llmtp.cli._out import console, emit_json
    from llmtp.services.models.catalog import load_catalog
    from llmtp.services.models.hub import check_catalog, report_json
    from llmtp.settings import load_settings

    report = check_catalog(load_settings().settings, load_catalog(), alias)
    if json_out:
        emit_json(report_json(report))
    else:
        from rich.table import Table

        c = console(markup=False)  # all of it is data
        for repo, rev in report.revisions.items():
            c.print(f"{repo} at revision {(rev or 'unknown')[:12]}")
        table = Table("alias", "item", "status", "repo", "detail")
        for r in report.rows:
            table.add_row(r.alias, r.item, r.status, r.repo, (f"{r.file}: " if r.file else "") + r.detail)
        c.print(table)
        diffs = report.differences
        c.print(f"{len(diffs)} difference(s)" if diffs else "the catalog matches the hub")
        for r in diffs:
            c.print(f"  {r.alias} {r.item} ({r.repo}): {r.detail}")
    if report.differences:
        raise typer.Exit(1)


def _list_local(json_out: bool) -> None:
    from llmtp.cli._out import console, emit_json
    from llmtp.services.models.local import list_local
    from llmtp.settings import load_settings

    rows = list_local(load_settings().settings)
    if json_out:
        emit_json([r.as_json() for r in rows])
        return
    c = console(markup=False)
    if not rows:
        c.print("no model files on disk (HF cache, LLAMA_CACHE or llmtp's pulls); `llmtp models pull ALIAS` gets one")
        return
    c.print(local_table(rows))


def local_table(rows):  # noqa: ANN001 - services.models.local rows
    """Model and path are typed back (`serve`, `rm`): never cut; a narrow terminal gets one block per file."""
    from llmtp.cli._out import human_bytes, table

    t = table("model", "quant", "size", "MTP", "path", whole=("model", "path"))
    for r in rows:
        t.add_row(r.alias or r.repo or "-", r.quant or "-", human_bytes(r.size_bytes), r.mtp, r.path)
    return t


@models_app.command("rm")
def rm(
    ref: str = typer.Argument(
        ..., help="ALIAS[:QUANT] or org/repo:QUANT (as `llmtp models list --local` shows).", autocompletion=model_names
    ),
    json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Remove a downloaded model from the HF cache (or llmtp's pulls) and say what it freed."""
    from llmtp.cli._out import console, emit_json, human_bytes
    from llmtp.services.models.local import remove_model
    from llmtp.settings import load_settings

    done = remove_model(ref, load_settings().settings)
    if json_out:
        emit_json(done)
        return
    c = console()
    for f in done.files:
        c.print(f"removed {f}", markup=False)
    c.print(f"freed {human_bytes(done.freed_bytes)}")


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
    # habits from ollama and docker: `llmtp list`, `pull`, `rm` do what `llmtp models ...` does
    app.command("list", hidden=True, help="Same as `llmtp models list`.")(list_)
    app.command("pull", hidden=True, help="Same as `llmtp models pull`.")(pull)
    app.command("rm", hidden=True, help="Same as `llmtp models rm`.")(rm)
