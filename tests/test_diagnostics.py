"""liere.diagnostics: commutators, relativity error and frequencies against hand-computed values."""

import pytest
import torch

import liere
from liere import diagnostics
from oracle import COMMUTING, make


@pytest.mark.parametrize("name", COMMUTING)
def test_commuting_methods_have_zero_commutators_and_are_relative(name):
    pe = make(name)
    grid = liere.positions.grid((4, 4) if pe.pos_dims == 2 else (16,), "index")
    comm = diagnostics.commutators(pe.generators())
    assert comm.shape == (pe.num_heads, pe.pos_dims, pe.pos_dims)
    assert comm.max() < 1e-5
    rel = diagnostics.relativity_error(pe, grid)
    assert rel.shape == (pe.num_heads,) and rel.max() < 1e-4


@pytest.mark.parametrize("name,block", [("liere", 4), ("liere", 16), ("spherical", 3)])
def test_noncommuting_methods_are_measured_as_such(name, block):
    pe = make(name, block_size=block)
    grid = liere.positions.grid((4, 4), "liere")
    assert diagnostics.commutators(pe.generators()).max() > 1e-2
    assert diagnostics.relativity_error(pe, grid).min() > 1e-2


def test_commutator_by_hand():
    a = torch.zeros(2, 1, 3, 3)
    a[0, 0, 0, 1], a[0, 0, 1, 0] = -1.0, 1.0  # L_z
    a[1, 0, 0, 2], a[1, 0, 2, 0] = 1.0, -1.0  # L_y
    # [L_z, L_y] = -L_x (norm sqrt 2); each has norm sqrt 2, so the ratio is 1/sqrt 2.
    comm = diagnostics.commutators(a)
    torch.testing.assert_close(comm[0, 0, 1], torch.tensor(2 ** -0.5), atol=1e-6, rtol=0)
    assert comm[0, 0, 0] == 0


def test_frequencies_are_the_rope_mixed_magnitudes():
    pe = make("rope_mixed")
    got = diagnostics.frequencies(pe.generators().detach())  # (d, H, D/2)
    want = pe.freqs[0].detach().abs().sort(-1).values  # (d, H, M)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_string_frequencies_are_basis_independent():
    pe = make("string")  # random Cayley basis
    got = diagnostics.frequencies(pe.generators().detach())
    torch.testing.assert_close(got, pe.freqs[0].detach().abs().sort(-1).values, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name,relative", [("rope_mixed", True), ("string", True), ("liere", False)])
def test_model_report_leaves_prefix_tokens_out(name, relative):
    from liere.models import build_model

    model = build_model("vit", "micro", name, input_shape=(16, 16), patch_size=4, num_classes=2, depth=1,
                        num_registers=1, **({"block_size": 4} if name == "liere" else {}))
    assert model.pe.num_prefix_tokens == 2
    rel = max(diagnostics.inspect_model(model)["layers"][0]["relativity_error"])
    assert (rel < 1e-4) == relative, rel


def test_report_files_and_table(tmp_path):
    from liere.models import build_model

    model = build_model("vit", "micro", "liere", input_shape=(16, 16), patch_size=4, num_classes=2, depth=2,
                        block_size=4)
    report = diagnostics.inspect_model(model)
    assert len(report["layers"]) == 2 and report["convention"] == "liere"
    paths = diagnostics.write_report(report, tmp_path)
    for key in ("json", "commutators", "relativity", "frequencies"):
        assert (tmp_path / paths[key].split("/")[-1]).stat().st_size > 0
    table = diagnostics.format_table(report)
    assert "max commutator" in table and len(table.splitlines()) == 2 + 2 + 1
