"""show_source prints the package's own code (what the chapters show is what runs), without docstrings."""
import inspect

import pytest

from gregnb.code import show_source
from gregnb.losses import energy_margin_loss, greg_penalty
from gregnb.train import METHODS
from gregnb.train.loop import _train_step


def test_show_source_is_the_running_code_without_its_docstring():
    shown = show_source(_train_step, METHODS["energy"].step)
    text = repr(shown)
    assert "loss.backward()" in text and "run.opt.step()" in text and "greg_objective(" in text
    assert '"""' not in shown.text and _train_step.__doc__.strip()[:30] not in shown.text
    body = [line for line in inspect.getsource(greg_penalty).splitlines() if "= torch.autograd.grad(" in line]
    assert body and body[0] in show_source(greg_penalty).text                  # the line that builds the gradient
    with_doc = show_source(energy_margin_loss, skip_docstring=False).text
    assert energy_margin_loss.__doc__.strip()[:40] in with_doc
    assert "gregnb.train.loop._train_step" in shown._repr_html_() and "<pre" in shown._repr_html_()


def test_show_source_refuses_what_has_no_python_source():
    with pytest.raises(TypeError, match="cannot read the source"):
        show_source(len)
    with pytest.raises(ValueError, match="at least one"):
        show_source()
