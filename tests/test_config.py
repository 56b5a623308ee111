"""The run configuration: strict keys with a helpful one-line error, flags over file, a content hash."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import (
    ConfigError,
    PipelineConfig,
    SamplerConfig,
    TextConfig,
    load_config,
)
from pipeline.samplers import SamplerError, get_sampler, register_sampler, sampler_names

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "config.yaml"
    p.write_text(text)
    return p


def test_default_yaml_states_the_defaults():
    assert load_config(REPO / "configs" / "default.yaml", {}) == PipelineConfig()
    assert load_config(None, {}) == PipelineConfig()


def test_unknown_key_names_it_and_lists_valid_keys(tmp_path):
    path = write(tmp_path, "sampler:\n  name: replay\n  temprature: 0.3\n")
    with pytest.raises(ConfigError) as e:
        load_config(path, {})
    msg = str(e.value)
    assert "\n" not in msg
    assert "'sampler.temprature'" in msg
    assert "did you mean 'temperature'" in msg
    for key in SamplerConfig.model_fields:
        assert key in msg.split("valid keys:")[1]


def test_unknown_top_level_and_nested_keys(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key 'outptu'.*valid keys: sampler, text, image, tokenizer, output, seed"):
        load_config(write(tmp_path, "outptu:\n  shard_size: 5\n"), {})
    with pytest.raises(ConfigError) as e:
        load_config(None, {"text.editor": ["negation"]})
    assert "'text.editor'" in str(e.value) and "did you mean 'editors'" in str(e.value)
    assert all(k in str(e.value) for k in TextConfig.model_fields)


def test_flags_override_the_file_and_none_means_not_given(tmp_path):
    path = write(tmp_path, "seed: 3\nsampler:\n  num_samples: 2\n  temperature: 0.2\noutput:\n  shard_size: 7\n")
    cfg = load_config(path, {"seed": 11, "sampler.num_samples": None, "sampler.model": "/models/x"})
    assert cfg.seed == 11
    assert cfg.sampler.num_samples == 2  # None override: the file's value stays
    assert cfg.sampler.temperature == 0.2 and cfg.sampler.model == "/models/x"
    assert cfg.output.shard_size == 7
    assert cfg.sampler_seed == 11  # sampler.seed unset: the run seed


def test_bad_values_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"sampler\.num_samples: .*greater than or equal to 1 \(got 0\)"):
        load_config(None, {"sampler.num_samples": 0})
    with pytest.raises(ConfigError, match=r"output\.shard_size"):
        load_config(write(tmp_path, "output:\n  shard_size: many\n"), {})
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "sampler: [unclosed\n"), {})
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(write(tmp_path, "- just\n- a list\n"), {})
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml", {})


def test_sampler_names_come_from_the_registry():
    with pytest.raises(ConfigError) as e:
        load_config(None, {"sampler.name": "gpt"})
    for name in ("replay", "transformers", "vllm", "vllm-server"):
        assert name in str(e.value)


def test_register_sampler_makes_a_new_backend_selectable():
    class Fixed:
        name = "fixed-test"

        def __init__(self, config):
            self.text = config.model or ""

        def sample(self, samples, n, seed):
            return [[self.text] * n for _ in samples]

    register_sampler("fixed-test", Fixed)
    assert "fixed-test" in sampler_names()
    cfg = load_config(None, {"sampler.name": "fixed-test", "sampler.model": "no acute disease", "sampler.num_samples": 2})
    assert get_sampler(cfg.sampler).sample([None], 2, 0) == [["no acute disease", "no acute disease"]]


def test_lazy_backend_that_is_missing_says_so():
    register_sampler("not-installed-test", "pipeline.samplers.does_not_exist:Nope")
    cfg = load_config(None, {"sampler.name": "not-installed-test"})
    with pytest.raises(SamplerError, match="not-installed-test.*cannot import pipeline.samplers.does_not_exist"):
        get_sampler(cfg.sampler)


def test_content_hash_tracks_pair_content_not_layout():
    base = load_config(None, {})
    assert base.content_hash() == load_config(None, {"output.shard_size": 3}).content_hash()
    assert base.content_hash() == load_config(None, {"sampler.batch_size": 2}).content_hash()
    assert base.content_hash() != load_config(None, {"seed": 1}).content_hash()
    assert base.content_hash() != load_config(None, {"image.sigma": 30}).content_hash()
