"""Show the code that runs: the chapters print the package's own functions, so the step a student reads is the
step that trains every model (``show_source(METHODS["energy"].step)``)."""
from __future__ import annotations

import inspect

__all__ = ["show_source"]


class Source:
    """Python source shown with syntax highlighting in a notebook (plain text elsewhere)."""

    def __init__(self, text: str, title: str):
        self.text, self.title = text, title

    def _repr_html_(self) -> str:
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import PythonLexer

        # inline styles: no style sheet in the page (the site test reads pages for stray error text)
        return (f"<p><code>{self.title}</code>, as it runs:</p>"
                + highlight(self.text, PythonLexer(), HtmlFormatter(noclasses=True, nobackground=True)))

    def __repr__(self) -> str:
        return f"# {self.title}, as it runs:\n{self.text}"


def show_source(*objects, skip_docstring: bool = True) -> Source:
    """The source of each function (or class) in ``objects``, one after the other, read from the installed package
    with :func:`inspect.getsource`. ``skip_docstring``: leave each docstring out (the code is the point)."""
    if not objects:
        raise ValueError("show_source needs at least one function, e.g. show_source(gregnb.losses.energy_margin_loss)")
    parts, names = [], []
    for obj in objects:
        try:
            text = inspect.getsource(obj)
        except (TypeError, OSError) as err:
            raise TypeError(f"show_source: cannot read the source of {obj!r} ({err}); pass a Python function or class "
                            f"defined in a file") from None
        if skip_docstring and obj.__doc__:
            text = _without_docstring(text)
        parts.append(text.rstrip())
        names.append(f"{obj.__module__}.{obj.__qualname__}")
    return Source("\n\n\n".join(parts) + "\n", ", ".join(names))


def _without_docstring(text: str) -> str:
    """``text`` (one function's or class's source) without its docstring's lines."""
    import ast
    import textwrap

    tree = ast.parse(textwrap.dedent(text))
    node = tree.body[0] if tree.body else None
    body = getattr(node, "body", [])
    if not body or not isinstance(body[0], ast.Expr) or not isinstance(getattr(body[0], "value", None), ast.Constant) \
            or not isinstance(body[0].value.value, str):
        return text
    lines = text.splitlines(keepends=True)
    return "".join(lines[:body[0].lineno - 1] + lines[body[0].end_lineno:])
