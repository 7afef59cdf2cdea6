"""The schematics draw what they say: the mask shares by brute force, one box per step of Algorithm 1, a ball whose
radius is (γ - E) / L."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from gregnb.schematics import algorithm1_schematic, certified_ball_schematic, mask_schematic, mask_shares  # noqa: E402


def test_mask_shares_count_the_rows_the_masks_keep():
    rng = np.random.default_rng(0)
    e_id, e_ood = rng.normal(-8, 2, 500), rng.normal(-2, 2, 300)
    shares = mask_shares(torch.tensor(e_id), e_ood, -7.0, -3.0)
    assert shares["ID rows penalised"] == sum(e <= -7.0 for e in e_id) / 500
    assert shares["outliers penalised"] == sum(e >= -3.0 for e in e_ood) / 300
    with pytest.raises(ValueError, match="m_in < m_out"):
        mask_shares(e_id, e_ood, -3.0, -7.0)


def test_each_schematic_draws_and_labels_its_parts():
    fig, axes = plt.subplots(1, 3)
    ax = mask_schematic(np.array([-9.0, -8.0, -4.0]), np.array([-6.0, 0.0]), -7.0, -3.0, ax=axes[0])
    texts = " ".join(t.get_text() for t in ax.texts)
    assert "ID rows penalised (E ≤ m_in): 67 %" in texts and "outliers penalised (E ≥ m_out): 50 %" in texts
    ax = algorithm1_schematic(ax=axes[1])
    assert len([t for t in ax.texts if t.get_text()]) == 6 and "k-means" in " ".join(t.get_text() for t in ax.texts)
    ax = certified_ball_schematic(ax=axes[2], energy=-8.0, threshold=-5.0, lipschitz=2.0)
    assert ax.patches[0].get_radius() == pytest.approx(1.5)
    with pytest.raises(ValueError, match="ID point"):
        certified_ball_schematic(energy=-4.0, threshold=-5.0)
    plt.close(fig)
