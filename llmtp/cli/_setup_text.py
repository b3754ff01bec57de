"""`llmtp setup`'s wording: each step's summary, the verify verdict and the final message, from the steps' data."""

from __future__ import annotations

from typing import Any

TITLES = {
    "detect": "detect the hardware",
    "build": "llama.cpp build",
    "model": "choose the model",
    "serve": "pull, plan and serve",
    "verify": "verify (quick)",
    "service": "systemd service",
}


def _tok_s(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.1f}"


def verify_line(d: dict[str, Any]) -> str:
    """The verify step's verdict in one line (what the step prints)."""
    from llmtp.core.verify import VerdictCode

    code, plain = VerdictCode(int(d["verdict"])), _tok_s(d.get("plain_tok_s"))
    measured = f"{_tok_s(d.get('mtp_tok_s'))} tok/s vs {plain} plain"
    if d.get("speedup") is not None:
        measured += f", {d['speedup']:.2f}x speedup"
    if d.get("acceptance") is not None:
        measured += f", acceptance {d['acceptance']:.2f}"
    if code == VerdictCode.PASS:
        return f"MTP on: {measured}"
    if code == VerdictCode.NO_MTP_HEADS:
        return f"MTP off: no MTP heads in this model ({d['model_detail']}); plain {plain} tok/s"
    if code == VerdictCode.MTP_NOT_IN_BUILD:
        return f"MTP off: the build has no draft-mtp ({d['build_detail']}); plain {plain} tok/s"
    if code == VerdictCode.MTP_INACTIVE:
        return f"MTP inactive at runtime: {d['verdict_reason']}; plain {plain} tok/s"
    if code == VerdictCode.MTP_SLOWER:
        return f"MTP on but slower than plain: {measured}"
    return f"MTP on: {measured}; {d['verdict_title']}: {d['verdict_reason']}"


def verify_short(d: dict[str, Any]) -> str:
    """The verdict in a few words (the end of the final message)."""
    from llmtp.core.verify import VerdictCode

    code, plain, mtp = VerdictCode(int(d["verdict"])), _tok_s(d.get("plain_tok_s")), _tok_s(d.get("mtp_tok_s"))
    speedup = "" if d.get("speedup") is None else f", {d['speedup']:.2f}x"
    return {
        VerdictCode.PASS: f"MTP on, {mtp} tok/s{speedup}",
        VerdictCode.NO_MTP_HEADS: f"MTP off (no MTP heads), plain {plain} tok/s",
        VerdictCode.MTP_NOT_IN_BUILD: f"MTP off (build without draft-mtp), plain {plain} tok/s",
        VerdictCode.MTP_INACTIVE: f"MTP inactive, plain {plain} tok/s",
        VerdictCode.MTP_SLOWER: f"MTP on but slower{speedup}: {mtp} tok/s vs {plain} plain",
    }.get(code, f"MTP on, {mtp} tok/s{speedup}, {d['verdict_title']}")


def summary(step) -> str:
    """One line for a finished step (a services.setup.flow.StepResult)."""
    d, name = step.data, step.name
    if name == "detect":
        ram = f"{d['ram_bytes'] / 2**30:.0f} GiB RAM" if d.get("ram_bytes") else "RAM unknown"
        gpus = ", ".join(d["gpus"]) if d["gpus"] else "no GPU"
        return (
            f"{gpus}; {d.get('cpu_threads') or '?'} CPU threads, {ram}; "
            f"recommended build profile {d['recommended_profile']}: {d['reason']}"
        )
    if name == "build":
        how = {
            "reused": "reused the current build",
            "switched": "switched to the installed build",
            "built": f"built from the {d.get('source')} source",
        }[d["how"]]
        return f"{how}: {d['build_id']} (MTP {d['mtp'] or 'not supported'})"
    if name == "model":
        return f"{d['ref']} ({d['how']})"
    if name == "serve":
        if d["action"] == "not_started":
            why = "--no-serve" if d["because"] == "no_serve" else "the service serves it (step 6)"
            return f"{'pulled' if d['pulled'] else 'model present'}; not started ({why})"
        if d["action"] == "already_serving":
            return f"already serving at {d['url']}{_address_text(d)}"
        sample = f"; it answered: {d['sample']!r}" if d.get("sample") else ""
        return f"serving at {d['url']} in the background{_address_text(d)}{sample}"
    if name == "verify":
        return verify_line(d)
    if step.status == "off":
        return "not requested (--service installs the systemd unit)"
    return "unit already installed" if step.status == "unchanged" else "; ".join(d["actions"])


def message(result) -> str:
    """The last line of a run (a services.setup.flow.SetupResult): the model, where it is served, the verdict."""
    if not result.changed:
        return "already set up: nothing changed"
    by = {s.name: s for s in result.steps}
    model = by["model"].data.get("ref", "?") if "model" in by else "?"
    url = by["serve"].data.get("url") if "serve" in by else None
    where = (
        f"serving at {url}"
        if url
        else "served by the service"
        if by.get("service") and by["service"].status != "off"
        else "not served"
    )
    short = verify_short(by["verify"].data) if "verify" in by else ""
    return f"set up: {model} {where}; {short}".rstrip("; ")


def as_dict(result) -> dict[str, Any]:
    """`llmtp setup --json`: the same data and words the people's view shows."""
    steps = []
    for s in result.steps:
        extra = {"line": verify_line(s.data), "short": verify_short(s.data)} if s.name == "verify" else {}
        steps.append({"name": s.name, "status": s.status, "summary": summary(s), **s.data, **extra})
    return {
        "changed": result.changed,
        "message": message(result),
        "skipped": [s.name for s in result.steps if s.status != "done"],
        "steps": steps,
        "warnings": result.warnings,
        "state_file": str(result.state_file),
    }


def _address_text(d: dict) -> str:
    """`; OpenAI base URL: ...; web UI: ...` (core/ui.address_lines), when the server was asked."""
    if "openai_base_url" not in d:
        return ""
    from llmtp.core.ui import address_lines

    return "; " + "; ".join(address_lines(d, d.get("api_key_file")))
