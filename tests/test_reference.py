"""The paper's transcribed numbers: each attributed to one named table, consistently, and shown by paper_table."""
import math

import pytest

from gregnb.reference import PAPER_MEAN, PAPER_PER_SET, PER_SET_TABLE, TABLES, paper_table


def test_every_number_names_a_known_table():
    assert {key[3] for key in PAPER_MEAN} | {PER_SET_TABLE} <= set(TABLES)
    for key, v in PAPER_MEAN.items():
        assert set(v) == {"fpr95", "auroc"}, key
        assert all(x is None or 0 < x < 100 for x in v.values()), key


def test_the_ablation_rows_sit_together_and_apart_from_the_main_table():
    ablation = {(net, m): v for (ds, net, m, table), v in PAPER_MEAN.items() if table == "ablation"}
    assert len({net for net, _ in ablation}) == 1, "one ablation table, one network label"
    methods = {m for _, m in ablation}
    assert {"oe", "oe+grad", "poem", "poem+grad", "energy", "energy+grad (greg)"} == methods
    net = next(iter(ablation))[0]
    assert ablation[(net, "energy")] == {"fpr95": 11.26, "auroc": 97.43}
    assert ablation[(net, "energy+grad (greg)")] == {"fpr95": 7.93, "auroc": 98.12}
    # the ablation's AUROCs are not lent to the main table's rows
    main_aurocs = {v["auroc"] for key, v in PAPER_MEAN.items() if key[3] == "main"}
    assert not main_aurocs & {97.43, 98.12}


def test_per_set_numbers_agree_with_the_main_table_means():
    for (ds, net, method), per_set in PAPER_PER_SET.items():
        assert len(per_set) == 6
        main = PAPER_MEAN.get((ds, net, method, "main"))
        if main is None:
            continue
        for i, name in enumerate(("fpr95", "auroc")):
            if main[name] is not None:
                mean = sum(v[i] for v in per_set.values()) / len(per_set)
                assert math.isclose(mean, main[name], abs_tol=0.02), (ds, net, method, name, mean)


def test_paper_table():
    df = paper_table("cifar10")
    assert list(df.index.names) == ["table", "network", "method"]
    assert list(df.columns) == ["FPR95 % (paper)", "AUROC % (paper)"]
    assert set(df.index.get_level_values("table")) == {"main", "ablation", "energy paper"}
    assert df.loc[("main", "resnet18_32x32", "greg"), "FPR95 % (paper)"] == 7.90
    assert set(paper_table("imagenet10").index.get_level_values("table")) == {"imagenet"}
    with pytest.raises(ValueError, match="cifar10"):
        paper_table("svhn")
