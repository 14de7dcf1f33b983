"""NAS-Bench-201 specifics: arch strings, edge order, the benchmark's skeleton."""

from __future__ import annotations

import random

import pytest
import torch

import denas.spaces as spaces
from denas.data.nb201_table import load_nb201
from denas.spaces.base import StructureError, param_count
from denas.spaces.nb201 import OPS, from_arch_string, to_arch_string


def _rows(every: int = 97) -> list[dict[str, str]]:
    # the table ships with the repository: a missing one fails here (FileNotFoundError), never skips
    return [row for i, row in enumerate(load_nb201()) if i % every == 0]


def test_arch_strings_round_trip_against_the_benchmark_table():
    space = spaces.get("nb201")
    rows = _rows()
    assert len(rows) > 100
    for row in rows:
        s = {"ops": row["ops"].split()}
        space.validate(s)
        assert to_arch_string(s) == row["arch"]
        assert from_arch_string(row["arch"]) == s


def test_malformed_arch_strings_are_rejected():
    for bad in [
        "",
        "|nor_conv_3x3~0|",
        "|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|",
        "|none~1|+|none~0|none~1|+|none~0|none~1|none~2|",
    ]:
        with pytest.raises(StructureError, match="arch"):
            from_arch_string(bad)


def test_edge_feeding_the_output_decides_whether_input_reaches_it():
    # only node3<-0 is a convolution; everything else is "none": a cell with all-zero output
    # except through that edge. Zeroing that edge's weights must zero the cell's output.
    space = spaces.get("nb201", {"preset": "tiny"})
    model = space.build({"ops": ["none", "none", "none", "nor_conv_3x3", "none", "none"]}).eval()
    cell = model.cells[0]
    x = torch.randn(1, space.config["channels"], 8, 8)
    assert cell(x).abs().sum() > 0
    with torch.no_grad():
        cell.edges[3][1].weight.zero_()
        cell.edges[3][2].bias.zero_()
    assert cell(x).abs().sum() == 0


def test_full_size_skeleton_matches_analytic_counts_and_classifies_cifar_shapes():
    space = spaces.get("nb201")
    s = space.sample(random.Random(7))
    model = space.build(s)
    assert param_count(model) == space.count_params(s)
    x, _ = space.example_inputs(batch_size=2)
    assert x.shape == (2, 3, 32, 32)
    assert model.forward_features(x).shape == (2, 64, 8, 8)
    assert model(x).shape == (2, 10)


def test_narrowed_op_set_only_samples_allowed_ops():
    space = spaces.get("nb201", {"ops": ["skip_connect", "nor_conv_3x3"]})
    rng = random.Random(0)
    seen = {op for _ in range(50) for op in space.sample(rng)["ops"]}
    assert seen == {"skip_connect", "nor_conv_3x3"}
    with pytest.raises(StructureError, match=r"ops\[0\].*skip_connect"):
        space.validate({"ops": ["none"] * 6})


@pytest.mark.parametrize(
    "overrides, key",
    [
        ({"ops": ["conv_5x5"]}, "searchSpace.ops"),
        ({"ops": []}, "searchSpace.ops"),
        ({"channels": 0}, "searchSpace.channels"),
        ({"image_size": 30}, "searchSpace.image_size"),
        ({"num_classes": "ten"}, "searchSpace.num_classes"),
    ],
)
def test_invalid_overrides_name_the_key(overrides, key):
    with pytest.raises(StructureError) as err:
        spaces.get("nb201", overrides)
    assert err.value.key == key and key in str(err.value)


def test_invalid_op_names_the_edge_and_the_allowed_ops():
    space = spaces.get("nb201")
    with pytest.raises(StructureError, match=r"ops\[2\].*nor_conv_3x3"):
        space.validate({"ops": ["none", "none", "conv_7x7", "none", "none", "none"]})
    with pytest.raises(StructureError, match="ops"):
        space.validate({"ops": ["none"] * 5})


def test_encoding_is_one_hot_per_edge():
    space = spaces.get("nb201")
    vec = space.encode({"ops": list(OPS) + ["none"]})
    assert len(vec) == 30 and sum(vec) == 6
    assert vec[:5] == [1.0, 0, 0, 0, 0] and vec[5:10] == [0, 1.0, 0, 0, 0]


def test_digits_preset_takes_8x8_grey_images():
    space = spaces.get("nb201", {"preset": "digits"})
    x, y = space.example_inputs(batch_size=4)
    assert x.shape == (4, 1, 8, 8)
    model = space.build(space.sample(random.Random(0)))
    assert model(x).shape == (4, 10)


def test_the_shipped_table_holds_every_cell_and_the_known_optimum():
    rows = load_nb201()
    assert [int(r["index"]) for r in rows] == list(range(15625))
    assert max(float(r["cifar10_test_acc"]) for r in rows) == pytest.approx(94.37, abs=0.005)
    assert {k for k in rows[0] if k.startswith("latency_ms_")} and "cifar10_valid_acc_12ep" in rows[0]


def test_a_missing_table_is_an_error_naming_the_file_not_a_skip(tmp_path, monkeypatch):
    from denas.data import nb201_table

    monkeypatch.setattr(nb201_table, "NB201_TABLE", tmp_path / "nb201.csv.gz")
    nb201_table._read.cache_clear()
    try:
        with pytest.raises(FileNotFoundError, match="nb201.csv.gz"):
            nb201_table.load_nb201()
    finally:
        nb201_table._read.cache_clear()
