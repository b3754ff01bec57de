"""Tune: the staged sweep, the decision (including turning MTP off), and per-model settings storage."""

from __future__ import annotations

from contextlib import contextmanager

import pytest

from llmtp.core import tune as core
from llmtp.core.capabilities import Capabilities
from llmtp.core.gguf_meta import ModelInfo
from llmtp.core.launch import LaunchSpec, MtpSettings
from llmtp.core.verify import Method, summarize
from llmtp.errors import ServeError
from llmtp.services import model_settings
from llmtp.services.tune import tune
from llmtp.services.verify import Target

CAPS = Capabilities(enums={"--spec-type": ["none", "draft-mtp", "ngram-mod"]})
METHOD = Method(n_predict=8, warmups=0, runs=2, temperatures=[0.0], prompts=["code"])


def trial(n_max, tps, p_min=0.0, enabled=True, acceptance=0.5):
    mtp = MtpSettings(enabled=enabled, n_max=n_max, p_min=p_min)
    return core.Trial(mtp=mtp, label=core.label(mtp), tokens_per_s=summarize([tps]), acceptance=acceptance)


def test_stages():
    assert [m.n_max for m in core.stage_n_max(MtpSettings())] == [1, 2, 3, 4, 5, 6]
    assert all(m.enabled and m.p_min == 0.0 for m in core.stage_n_max(MtpSettings()))
    assert [m.p_min for m in core.stage_p_min(MtpSettings(enabled=True, n_max=4))] == [0.5, 0.75]
    stacked = core.stage_stack(MtpSettings(enabled=True, n_max=4), ["draft-mtp", "ngram-mod"])
    assert [m.extra_types for m in stacked] == [["ngram-mod"]]
    assert core.stage_stack(MtpSettings(enabled=True), ["draft-mtp"]) == []


def test_labels():
    assert core.label(MtpSettings()) == "plain"
    assert core.label(MtpSettings(enabled=True, n_max=2, p_min=0.75, extra_types=["ngram-mod"])) == \
        "n-max 2, p-min 0.75 + ngram-mod"


def test_decide_picks_the_fastest():
    d = core.decide(summarize([100.0]), [trial(3, 120.0), trial(6, 142.0), trial(2, 110.0)])
    assert d.chosen.n_max == 6 and d.chosen.enabled
    assert d.reason == "n-max 6, p-min 0 is the fastest: 1.42x plain decoding"


def test_decide_turns_mtp_off_when_nothing_beats_plain():
    d = core.decide(summarize([100.0]), [trial(1, 60.0), trial(2, 102.0)])
    assert d.chosen.enabled is False
    assert d.reason == ("nothing beats plain decoding: best MTP (n-max 2, p-min 0, acceptance 0.50) runs at 1.02x plain, "
                        "under the 1.03x needed; MTP off for this model")
    assert core.decide(summarize([100.0]), []).chosen.enabled is False


def test_a_trial_that_never_drafted_is_not_mtp():
    # p-min 0.75 on a model whose drafts are unsure: no draft at all, plain speed plus noise.
    d = core.decide(summarize([100.0]), [trial(3, 60.0), trial(3, 106.0, p_min=0.75, acceptance=None)])
    assert d.chosen.enabled is False


def fake_launcher(speed, fail=lambda mtp: False):
    """speed(mtp) -> tok/s; records the specs launched."""
    specs = []

    class H:
        def __init__(self, tps):
            self.tps = tps

        def slots(self):
            return [{"speculative": True}]

        def metrics(self):
            return None

        def complete(self, prompt, *, n_predict, temperature, seed):
            return {"predicted_per_second": self.tps, "predicted_n": n_predict, "draft_n": 4, "draft_n_accepted": 2}

        def log_text(self):
            return ""

    @contextmanager
    def launch(spec: LaunchSpec):
        specs.append(spec)
        if fail(spec.mtp):
            raise ServeError("boom")
        yield H(speed(spec.mtp))

    launch.specs = specs
    return launch


def target(tmp_path, heads=1, caps=CAPS):
    return Target(model_path=tmp_path / "m.gguf", model_key="m", caps=caps,
                  info=ModelInfo(arch="qwen35", nextn_predict_layers=heads, mtp_arch=True))


def speed(mtp: MtpSettings) -> float:
    if not mtp.enabled:
        return 100.0
    tps = 100.0 + 10 * mtp.n_max - (30 if (mtp.p_min or 0) >= 0.75 else 0)
    return tps + (5 if mtp.extra_types else 0)


def test_sweep_stages_and_choice(tmp_path):
    launch = fake_launcher(speed, fail=lambda m: m.n_max == 5 and m.enabled)
    seen = []
    d = tune(target(tmp_path), launch, base_spec=LaunchSpec(model="m", port=0), method=METHOD,
             on_trial=lambda t, i, n: seen.append((i, n, t.label, t.error)))
    assert d.chosen == MtpSettings(enabled=True, n_max=6, p_min=0.0, extra_types=["ngram-mod"])
    assert d.speedup == pytest.approx(1.65)
    assert [x[2] for x in seen] == ["plain"] + [f"n-max {n}, p-min 0" for n in range(1, 7)] + [
        "n-max 6, p-min 0.5", "n-max 6, p-min 0.75", "n-max 6, p-min 0 + ngram-mod"]
    assert seen[5][3] == "boom"  # a failed launch is recorded and skipped
    assert seen[-1][:2] == (10, 10)
    assert all(s.parallel == 1 for s in launch.specs)


def test_no_heads_or_no_mtp_build_measures_nothing(tmp_path):
    launch = fake_launcher(speed)
    d = tune(target(tmp_path, heads=0), launch, base_spec=LaunchSpec(model="m", port=0), method=METHOD)
    assert d.chosen.enabled is False and d.reason.startswith("model has no MTP heads")
    d = tune(target(tmp_path, caps=Capabilities()), launch, base_spec=LaunchSpec(model="m", port=0), method=METHOD)
    assert d.reason == "this build offers no draft-mtp: MTP off"
    assert launch.specs == []


def test_branch_dialect_sweeps_n_max_only(tmp_path):
    caps = Capabilities(flags=["--mtp", "--mtp-draft-tokens"])
    launch = fake_launcher(speed)
    d = tune(target(tmp_path, caps=caps), launch, base_spec=LaunchSpec(model="m", port=0), method=METHOD)
    assert len(launch.specs) == 7 and d.chosen.n_max == 6


def test_model_settings_roundtrip(tmp_path):
    from llmtp.settings import load_settings

    s = load_settings().settings
    assert model_settings.load(s, "k") is None
    model_settings.save(s, "k", MtpSettings(enabled=False), reason="slower")
    assert model_settings.load(s, "k") == MtpSettings(enabled=False)
    assert model_settings.load_record(s, "k").reason == "slower"
    assert (s.data_dir / "model-settings" / "k.json").is_file()


def test_model_key_names_content_not_path(tmp_path):
    a = tmp_path / "Model Q4.gguf"
    a.write_bytes(b"GGUF" + b"\0" * 100)
    b = tmp_path / "other" / "Model Q4.gguf"
    b.parent.mkdir()
    b.write_bytes(b"GGUF" + b"\0" * 100)
    assert model_settings.model_key(a) == model_settings.model_key(b)
    assert model_settings.model_key(a).startswith("Model_Q4-104-")
    b.write_bytes(b"GGUF" + b"\1" * 100)
    assert model_settings.model_key(a) != model_settings.model_key(b)
