"""The NTK term is the same whether or not intel_extension_for_pytorch has been imported.

IPEX (imported by latency measurement when installed) replaces ``aten::layer_norm``, and
``torch.func.grad`` through it is wrong; complexity calls the native kernel while it vmaps."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

from denas.scores import components

SCRIPT = textwrap.dedent(
    """
    import torch
    from torch import nn
    import denas.scores as scores

    torch.set_num_threads(1)
    def complexity():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(12, 32), nn.LayerNorm(32), nn.ReLU(), nn.Linear(32, 16),
                              nn.LayerNorm(16), nn.ReLU(), nn.Linear(16, 4))
        x = torch.randn(8, 12, generator=torch.Generator().manual_seed(1))
        return scores.score_model(model, x, proxies=["complexity"], weights={})["complexity"]
    before = complexity()
    import intel_extension_for_pytorch  # noqa: F401
    print(before, complexity())
    """
)


def test_native_layer_norm_equals_the_fused_one():
    x = torch.randn(3, 5, 8, generator=torch.Generator().manual_seed(0))
    w, b = torch.randn(5, 8), torch.randn(5, 8)
    assert torch.allclose(
        components._layer_norm(x, (5, 8), w, b, 1e-5), F.layer_norm(x, (5, 8), w, b, 1e-5), atol=1e-6
    )
    assert torch.allclose(components._layer_norm(x, (8,)), F.layer_norm(x, (8,)), atol=1e-6)
    with components._native_layer_norm():
        assert F.layer_norm is components._layer_norm
    assert F.layer_norm is not components._layer_norm  # put back


def test_complexity_through_layernorm_does_not_change_when_ipex_is_imported():
    pytest.importorskip("intel_extension_for_pytorch")  # pinned in the stack; the bug needs it
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    before, after = map(float, out.stdout.split()[-2:])
    assert after == pytest.approx(before, rel=1e-5)
