"""Per-pair score terms (ropekit.pairs) against the closed form and the dense rotation matrix."""

import pytest
import torch

import ropekit
from ropekit.pairs import pair_scores


@pytest.mark.parametrize("layout", ["half", "paper"])
def test_pair_terms_match_the_closed_form_and_sum_to_the_score(layout):
    torch.manual_seed(0)
    d = 8
    q, k = torch.randn(3, d, dtype=torch.float64), torch.randn(3, d, dtype=torch.float64)
    inv_freq, _ = ropekit.rope_frequencies(d, 100.0)
    r = torch.tensor([0, 1, 5, 40])
    s = pair_scores(q, k, r, inv_freq, layout)
    assert s.shape == (3, 4, d // 2)
    i = torch.arange(d // 2)
    ia, ib = (i, i + d // 2) if layout == "half" else (2 * i, 2 * i + 1)
    angle = r.double()[:, None] * inv_freq.float().double()
    qa, qb, ka, kb = q[:, None, ia], q[:, None, ib], k[:, None, ia], k[:, None, ib]
    closed = (qa * ka + qb * kb) * angle.cos() + (qb * ka - qa * kb) * angle.sin()
    torch.testing.assert_close(s, closed, rtol=1e-6, atol=1e-6)
    for j, dist in enumerate(r.tolist()):  # the sum is q·R_r k with the explicit matrix
        R = ropekit.rotation_matrix(dist, d, layout=layout, inv_freq=inv_freq)
        torch.testing.assert_close(s[:, j].sum(-1), (q * (k @ R.T)).sum(-1), rtol=1e-6, atol=1e-6)


def test_still_pairs_of_proportional_rope_give_the_same_term_at_every_distance():
    torch.manual_seed(1)
    q, k = torch.randn(5, 16), torch.randn(5, 16)
    inv_freq, _ = ropekit.rope_frequencies(16, 10000.0, "proportional", partial_rotary_factor=0.5)
    s = pair_scores(q, k, 1000, inv_freq)
    torch.testing.assert_close(s[..., 4:], s[:, :1, 4:].expand_as(s[..., 4:]), rtol=0, atol=0)
    assert (s[..., :4].std(dim=1) > 1e-3).all()  # the fast pairs do change with distance


def test_mismatched_q_and_k_are_named():
    with pytest.raises(ValueError, match="q and k must be tensors of the same shape"):
        pair_scores(torch.ones(2, 8), torch.ones(3, 8), 4, ropekit.rope_frequencies(8)[0])
