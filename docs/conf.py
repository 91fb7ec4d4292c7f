"""Sphinx configuration: the provider's documentation, built from its docstrings and tested files.

``make docs`` builds it with warnings as errors and nitpicky references.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# autodoc imports the provider, which imports Airflow: a throw-away home, no database needed.
os.environ.setdefault("AIRFLOW_HOME", str(ROOT / "docs" / "_build" / "airflow-home"))

from airflow_provider_juspay import __version__  # noqa: E402

project = "airflow-provider-juspay"
author = "airflow-provider-juspay developers"
copyright = "2026, " + author
release = version = __version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "snippets/README.md"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

html_theme = "furo"
html_title = f"airflow-provider-juspay {release}"
html_static_path = ["_static"]
html_theme_options = {"navigation_with_keys": True}

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
autoclass_content = "both"

# Every reference must resolve (``make docs`` runs ``-n -W``), except to types of other projects: the
# site is built offline (no intersphinx), so Airflow's, the standard library's and third parties' names
# are plain text here.
nitpicky = True
nitpick_ignore_regex = [
    (
        r"py:.*",
        r"(airflow|pendulum|requests|urllib3|tenacity|datetime|collections|typing|enum|"
        r"contextlib|concurrent|threading|urllib|pathlib|logging|sqlalchemy|jinja2|openlineage|pyarrow|http|ssl|types|argparse|fastapi|starlette)\b.*",
    ),
    (
        r"py:class",
        r"(Any|Callable|Iterable|Iterator|Mapping|Sequence|Context|NoneType|Path|Enum|"
        r"DbApiHook|BaseOperator|BaseSensorOperator|BaseHook|BaseNotifier|BaseTrigger|BaseOperatorLink|"
        r"ProgressLog|PaceSource|TaskInstance|TaskInstanceKey|Connection|JuspayClient|SplitResult|Asset|ObjectStoragePath|Decimal|Exception|ValueError|RuntimeError|BaseException|"
        r"str|int|float|bool|dict|list|tuple|set|frozenset|bytes|object|type|T|P)",
    ),
    (r"py:.*", r"(_[A-Za-z].*|.*\._[A-Za-z].*)"),  # private names that public signatures mention
    (r"py:class", r".*\.(PaceSource|ProgressLog)"),  # protocols the report reads, not for users
]
# The ledger package re-exports its named types (Key, RunInfo) from ``rows``: either target is right.
suppress_warnings = ["ref.python"]


def inherited_signature(app, what, name, obj, options, signature, return_annotation):
    """An operator's signature with the keyword arguments it inherits from our base class, defaults
    shown, in place of ``**kwargs`` alone (which then stands for BaseOperator's arguments)."""
    import inspect

    if what != "class" or not isinstance(obj, type) or not obj.__module__.startswith("airflow_provider_"):
        return None
    own = inspect.signature(obj.__init__).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in own.values()):
        return None
    params = [p for p in own.values() if p.name != "self" and p.kind is not p.VAR_KEYWORD]
    names = {p.name for p in params}
    for base in obj.__mro__[1:]:
        if not base.__module__.startswith("airflow_provider_") or "__init__" not in vars(base):
            continue
        for p in inspect.signature(base.__init__).parameters.values():
            if p.name != "self" and p.kind is p.KEYWORD_ONLY and p.name not in names:
                params.append(p)
                names.add(p.name)
    params.append(inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD))
    plain = [p.replace(annotation=inspect.Parameter.empty) for p in params]
    return str(inspect.Signature(plain)), return_annotation


def _typed_dicts_have_no_call_signature() -> None:
    """Autodoc cannot format a TypedDict's signature (it is a dict's); give it none, as it is built
    like a dict literal."""
    import inspect

    from airflow_provider_juspay.sync import report

    report.FailureEntry.__signature__ = inspect.Signature()  # type: ignore[attr-defined]


def setup(app):
    _typed_dicts_have_no_call_signature()
    app.connect("autodoc-process-signature", inherited_signature)
    app.add_css_file("wrap-code.css")
