"""The strict config: the exact messages users see for each kind of mistake."""

from pathlib import Path

import pytest
import yaml

from vidpose.cli import main
from vidpose.config import Config, ConfigError, load_config, save_config, to_dict


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_round_trip_through_yaml(tmp_path):
    saved = save_config(Config(), tmp_path / "resolved.yaml")
    assert load_config(saved) == Config()
    assert not list(tmp_path.glob("*.tmp")), "atomic write left its temporary file"


def test_base_file_is_merged_section_by_section(tmp_path):
    write(tmp_path / "base.yaml", "train: {lr: 0.001, epochs: 3}\ndata: {sigma: 3.0}\n")
    child = write(tmp_path / "child.yaml", "base: base.yaml\ntrain: {epochs: 7}\n")
    config = load_config(child)
    assert config.train.epochs == 7
    assert config.train.lr == 0.001  # kept from the base
    assert config.data.sigma == 3.0


def test_overrides_are_converted_to_the_field_type():
    config = load_config(
        None,
        [
            "train.lr=1e-3",  # YAML reads this as a string; the float field accepts it
            "train.epochs=5",
            "data.input_size=[128, 96]",
            "data.frame_offsets=[-2,0,2]",
            "test.flip_test=false",
            "test.steps=null",
            "model.backbone.depth=2",
            "model.backbone.name=vit_tiny_patch16_224",
        ],
    )
    assert config.train.lr == pytest.approx(1e-3) and isinstance(config.train.lr, float)
    assert config.train.epochs == 5
    assert config.data.input_size == (128, 96)
    assert config.data.frame_offsets == (-2, 0, 2)
    assert config.test.flip_test is False
    assert config.test.steps is None
    assert config.model.backbone.depth == 2
    assert config.model.backbone.name == "vit_tiny_patch16_224"


def test_string_field_keeps_override_text_verbatim():
    # "on" would be a YAML boolean; a str field must keep the text as typed.
    config = load_config(None, ["data.root=on", "data.val_boxes=dets/1e5.json"])
    assert config.data.root == "on"
    assert config.data.val_boxes == "dets/1e5.json"


def test_unknown_key_names_file_key_and_suggests(tmp_path):
    path = write(tmp_path / "typo.yaml", "train:\n  epocs: 3\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value).startswith(
        f"{path}: unknown key 'train.epocs' (did you mean 'train.epochs'?); valid keys here: "
        "epochs, batch_size, lr, "
    )


def test_unknown_top_level_section(tmp_path):
    path = write(tmp_path / "x.yaml", "optimizer: {lr: 1}\n")
    with pytest.raises(ConfigError, match=r"unknown key 'optimizer'; valid keys here: data, model"):
        load_config(path)


def test_wrong_type_names_key_expected_and_got(tmp_path):
    path = write(tmp_path / "x.yaml", "train:\n  epochs: three\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value) == f"{path}: train.epochs: expected int, got str 'three'"


def test_bool_is_not_an_int(tmp_path):
    path = write(tmp_path / "x.yaml", "train:\n  epochs: true\n")
    with pytest.raises(ConfigError, match="train.epochs: expected int, got bool True"):
        load_config(path)


def test_choice_field_lists_the_choices():
    with pytest.raises(ConfigError) as error:
        load_config(None, ["model.head=transformer"])
    assert str(error.value) == (
        "<defaults>: model.head: expected one of 'diffusion', 'heatmap', 'tfpose', 'cal', "
        "'diffusionpose', 'pct_tokenizer', 'pct', got str 'transformer'"
    )


def test_cal_values_are_checked():
    with pytest.raises(ConfigError) as error:
        load_config(None, ["model.cal.train_only=backbone"])
    assert str(error.value) == (
        "<defaults>: model.cal.train_only: expected one of 'heatmaps', 'offsets' or null, got "
        "str 'backbone'"
    )
    assert load_config(None, ["model.cal.train_only=null"]).model.cal.train_only is None
    assert load_config(None, ["model.cal.train_only=offsets"]).model.cal.train_only == "offsets"
    with pytest.raises(ConfigError, match=r"model.cal.window: expected an odd size >= 1, got 6"):
        load_config(None, ["model.cal.window=6"])
    with pytest.raises(ConfigError, match=r"model.cal.components: expected >= 1, got 0"):
        load_config(None, ["model.cal.components=0"])


def test_tuple_length_is_checked():
    with pytest.raises(ConfigError, match=r"data.input_size: expected a list of 2 values"):
        load_config(None, ["data.input_size=[256]"])


def test_section_given_a_scalar():
    with pytest.raises(ConfigError, match="train: expected a mapping, got int 3"):
        load_config(None, ["train=3"])


def test_value_checks_run_after_conversion():
    with pytest.raises(ConfigError, match=r"data.frame_offsets: expected an odd number"):
        load_config(None, ["data.frame_offsets=[-1,0]"])
    with pytest.raises(ConfigError, match=r"not divisible by data.heatmap_stride=4"):
        load_config(None, ["data.input_size=[250,192]"])


def test_missing_file_and_missing_base(tmp_path):
    with pytest.raises(ConfigError) as error:
        load_config(tmp_path / "nope.yaml")
    assert str(error.value) == f"{tmp_path / 'nope.yaml'}: config file not found"
    child = write(tmp_path / "child.yaml", "base: gone.yaml\n")
    with pytest.raises(ConfigError, match=r"child.yaml: base file not found: gone.yaml"):
        load_config(child)


def test_only_one_base_level(tmp_path):
    write(tmp_path / "a.yaml", "train: {epochs: 1}\n")
    write(tmp_path / "b.yaml", "base: a.yaml\n")
    child = write(tmp_path / "c.yaml", "base: b.yaml\n")
    with pytest.raises(ConfigError, match="only one base level is allowed"):
        load_config(child)


def test_malformed_yaml_and_non_mapping(tmp_path):
    bad = write(tmp_path / "bad.yaml", "train: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid YAML"):
        load_config(bad)
    listy = write(tmp_path / "list.yaml", "- 1\n- 2\n")
    with pytest.raises(ConfigError, match=r"list.yaml: expected a mapping at the top level"):
        load_config(listy)


def test_override_without_equals_sign():
    with pytest.raises(ConfigError) as error:
        load_config(None, ["train.lr"])
    assert str(error.value) == "--set 'train.lr': expected KEY=VALUE, e.g. train.lr=1e-3"


def test_yaml_is_read_safely(tmp_path):
    # A python tag must not construct objects: safe_load rejects it.
    path = write(tmp_path / "evil.yaml", "train: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_cli_config_prints_resolved_yaml(tmp_path, capsys):
    path = write(tmp_path / "x.yaml", "train: {epochs: 4}\n")
    assert main(["config", str(path), "--set", "train.lr=0.01"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["train"]["epochs"] == 4
    assert printed["train"]["lr"] == 0.01
    assert printed == to_dict(load_config(path, ["train.lr=0.01"]))


def test_cli_reports_config_errors_without_traceback(tmp_path, capsys):
    path = write(tmp_path / "x.yaml", "train: {epochs: x}\n")
    assert main(["config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"vidpose config: error: {path}: train.epochs: expected int, got str 'x'"


def test_every_config_key_is_documented():
    docs = (Path(__file__).resolve().parents[1] / "docs" / "configs.md").read_text()

    def keys(tree, prefix=""):
        for key, value in tree.items():
            if isinstance(value, dict):
                yield from keys(value, f"{prefix}{key}.")
            else:
                yield prefix + key

    missing = [key for key in keys(to_dict(Config())) if f"`{key}`" not in docs]
    assert not missing, f"docs/configs.md does not describe: {missing}"
