"""The header-conditional Vulkan patch: header parsing, the decision, the series syntax, and the plan's patches
for Debian 12's headers (patch applied, reason said) and for headers that have VK_EXT_layer_settings (none)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from llmtp.adapters import shipped
from llmtp.adapters.runner import SubprocessRunner
from llmtp.adapters.sources import apply_patches
from llmtp.adapters.vulkan_sdk import header_candidates, installed_vulkan_headers
from llmtp.core.pin import parse_series
from llmtp.core.vulkan_headers import VulkanHeaders, condition_holds, parse_vulkan_core_h
from llmtp.errors import BuildError, ConfigError
from llmtp.services.build.installed import load_profile
from llmtp.services.build.pipeline import inputs_hash, load_patches, load_pin, plan
from llmtp.services.build.request import BuildRequest

FIX = Path(__file__).parent / "fixtures" / "vulkan"
OLD = FIX / "vulkan_core-1.3.239-debian12.h"
NEW = FIX / "vulkan_core-1.3.275-layer-settings.h"
PATCH = "vulkan-layer-settings-guard.patch"
COND = "vulkan-headers-lack-layer-settings"


def headers(path: Path) -> VulkanHeaders:
    return parse_vulkan_core_h(path.read_text(encoding="utf-8"), str(path))


def test_parse_debian12_header():
    h = headers(OLD)
    assert (h.version, h.layer_settings) == ("1.3.239", False)


def test_parse_header_with_layer_settings():
    h = headers(NEW)
    assert (h.version, h.layer_settings) == ("1.3.275", True)


def test_parse_header_without_version_lines():
    h = parse_vulkan_core_h("#define VK_EXT_layer_settings 1\n", "x.h")
    assert (h.version, h.layer_settings) == (None, True)
    # A mention in a comment is not the definition.
    assert parse_vulkan_core_h("// VK_EXT_layer_settings 1\n", "x.h").layer_settings is False


def test_condition_only_for_vulkan_builds_on_old_headers():
    old, new = headers(OLD), headers(NEW)
    why = condition_holds(COND, "vulkan", old)
    assert why is not None and "1.3.239" in why and str(OLD) in why and "VK_EXT_layer_settings" in why
    assert condition_holds(COND, "vulkan", new) is None
    assert condition_holds(COND, "vulkan", None) is None  # no headers: configure names the missing package
    assert condition_holds(COND, "cpu", old) is None  # a CPU build is never patched (nor rehashed)
    assert condition_holds(COND, "cuda", old) is None


def test_series_when_syntax():
    sha = "a" * 64
    got = parse_series(f"x.patch {sha} when={COND}\ny.patch {sha}\n")
    assert [(e.name, e.when) for e in got] == [("x.patch", COND), ("y.patch", None)]
    with pytest.raises(ConfigError, match="Unknown condition 'when=sometimes'") as exc:
        parse_series(f"x.patch {sha} when=sometimes\n", "series")
    assert f"when={COND}" in exc.value.hint
    with pytest.raises(ConfigError, match="series line 1"):
        parse_series(f"x.patch {sha} only-if=x\n", "series")


def test_shipped_series_has_only_the_conditional_vulkan_patch():
    d = shipped.shipped_patch_dir()
    entries = parse_series((d / "series").read_text(encoding="utf-8"))
    assert [(e.name, e.when) for e in entries] == [(PATCH, COND)]
    assert hashlib.sha256((d / PATCH).read_bytes()).hexdigest() == entries[0].sha256


def test_load_patches_both_ways():
    vk = load_profile("vulkan")
    got = load_patches(vk, None, headers(OLD))
    assert [e.name for e in got] == [PATCH] and "1.3.239" in got[0].reason
    assert load_patches(vk, None, headers(NEW)) == []
    assert load_patches(vk, None, None) == []
    assert load_patches(load_profile("cpu"), None, headers(OLD)) == []


def test_plan_hash_and_dry_run_say_which_headers():
    pin = load_pin()
    req = BuildRequest(profile="vulkan", source="pypi", native=False)
    old = plan(req, None, pin, vulkan=headers(OLD))
    new = plan(req, None, pin, vulkan=headers(NEW))
    assert [e.name for e in old.patches] == [PATCH] and new.patches == []
    assert inputs_hash("pypi:x", old) != inputs_hash("pypi:x", new)  # another patch set is another build
    cpu = BuildRequest(profile="cpu", source="pypi", native=False)
    assert plan(cpu, None, pin).patches == []


def test_installed_headers_lookup(tmp_path):
    sdk = tmp_path / "sdk"
    (sdk / "include" / "vulkan").mkdir(parents=True)
    shutil.copy(NEW, sdk / "include" / "vulkan" / "vulkan_core.h")
    system = tmp_path / "usr-include"
    (system / "vulkan").mkdir(parents=True)
    shutil.copy(OLD, system / "vulkan" / "vulkan_core.h")
    assert header_candidates({"VULKAN_SDK": str(sdk)}, (str(system),))[0] == sdk / "include/vulkan/vulkan_core.h"
    # $VULKAN_SDK wins, as in CMake's FindVulkan.
    assert installed_vulkan_headers({"VULKAN_SDK": str(sdk)}, (str(system),)).layer_settings is True
    assert installed_vulkan_headers({}, (str(system),)).version == "1.3.239"
    assert installed_vulkan_headers({}, (str(tmp_path / "none"),)) is None


@pytest.mark.skipif(shutil.which("patch") is None, reason="patch not installed")
def test_vulkan_patch_that_does_not_apply_is_a_clear_error(tmp_path):
    """Another llama.cpp version whose instance creation changed: the build stops, naming the hunk."""
    tree = tmp_path / "tree"
    (tree / "ggml" / "src" / "ggml-vulkan").mkdir(parents=True)
    (tree / "ggml" / "src" / "ggml-vulkan" / "ggml-vulkan.cpp").write_text("int main() { return 0; }\n")
    d = shipped.shipped_patch_dir()
    entries = [e for e in parse_series((d / "series").read_text(encoding="utf-8")) if e.name == PATCH]
    with pytest.raises(BuildError, match=f"Patch {PATCH} does not apply") as exc:
        apply_patches(tree, d, entries, SubprocessRunner(), is_git=False)
    assert "rebase it on the pinned tag" in exc.value.hint
    assert any("layer_settings" in line or "LayerSetting" in line for line in exc.value.details)
