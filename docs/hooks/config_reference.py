"""mkdocs hook: the configuration reference, generated from the pydantic models at build time.

mkdocs.yml names this file under `hooks:`. Where a page holds the marker line
`<!-- config-reference -->` (docs/reference/config.md), the hook puts one table per section there: the
shared sections of calo_ablate/config.py (data, train, sample, evaluate, trainer) and the `model` section
of every registered model family (calo_ablate/model/*/config.py, registered by
calo_ablate/model/families.py), each row a dotted key with its type, default and the field's
`description`. A key without a description stops the build (`mkdocs build --strict`, `make docs`) with
the keys named; tests/test_docs_reference.py runs the same check without mkdocs.
"""

from __future__ import annotations

import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

MARKER = "<!-- config-reference -->"
ROOT = Path(__file__).resolve().parents[2]  # the repository: docs/hooks/ -> docs/ -> root


class MissingDescription(Exception):
    """Config keys whose pydantic field has no description."""

    def __init__(self, keys: list[str]) -> None:
        self.keys = keys
        super().__init__(
            f"{len(keys)} config key(s) without a description (give each a Field(description=...)): "
            + ", ".join(keys))


def type_name(annotation: Any) -> str:
    """A readable type: `int | None`, `list[int]`, `'warmup' | 'published'`."""
    if annotation is type(None):
        return "None"
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin is Literal:
        return " \\| ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        return " \\| ".join(type_name(a) for a in args)
    if origin is not None:
        inner = ", ".join(type_name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    if annotation is Any or annotation is typing.Any:
        return "Any"
    return getattr(annotation, "__name__", str(annotation).replace("typing.", ""))


_BOUNDS = (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<"))


def constraints(field: FieldInfo) -> str:
    """The field's bounds, length limits and pattern: `≥ 1`, `> 0, < 1`, `length ≥ 1`."""
    parts = []
    for item in field.metadata:
        for attr, sign in _BOUNDS:
            if getattr(item, attr, None) is not None:
                parts.append(f"{sign} {getattr(item, attr)}")
        if getattr(item, "min_length", None) is not None:
            parts.append(f"length ≥ {item.min_length}")
        if getattr(item, "max_length", None) is not None:
            parts.append(f"length ≤ {item.max_length}")
        if getattr(item, "pattern", None):
            parts.append(f"pattern `{item.pattern}`")
    return ", ".join(parts)


def default_text(field: FieldInfo) -> str:
    """The default as it would be written in YAML (None stays None: YAML's null)."""
    if field.is_required():
        return "(required)"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, tuple):
        value = list(value)
    if isinstance(value, str) and not value:
        return "`''`"
    return f"`{value}`"


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def walk(model: type[BaseModel], prefix: str) -> list[tuple[str, str, str, str]]:
    """(key, type, default, description) of every field of `model` under `prefix`, sub-sections
    expanded in place (their own row first when they carry a description)."""
    rows: list[tuple[str, str, str, str]] = []
    for name, field in model.model_fields.items():
        key = f"{prefix}.{name}"
        nested = _nested_model(field.annotation)
        if nested is not None:
            if field.description:
                rows.append((key, "section", "", field.description))
            rows.extend(walk(nested, key))
            continue
        kind = type_name(field.annotation)
        bounds = constraints(field)
        rows.append((key, f"{kind}, {bounds}" if bounds else kind, default_text(field), field.description or ""))
    return rows


def missing_descriptions(rows: list[tuple[str, str, str, str]]) -> list[str]:
    return [key for key, kind, _, description in rows if kind != "section" and not description.strip()]


def table(rows: list[tuple[str, str, str, str]]) -> str:
    lines = ["| key | type | default | description |", "|---|---|---|---|"]
    for key, kind, default, description in rows:
        text = " ".join(description.split()).replace("|", "\\|")
        lines.append(f"| `{key}` | {kind} | {default} | {text} |")
    return "\n".join(lines)


def _first_paragraph(doc: str | None) -> str:
    return " ".join((doc or "").strip().split("\n\n")[0].split())


def sections() -> list[tuple[str, str, list[tuple[str, str, str, str]], str]]:
    """(title, text, rows, family) of every shared section ("" for family) and every registered family's
    `model` section."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import calo_ablate.model.families  # noqa: F401  (registers the families' sections)
    from calo_ablate import config as cfg

    out = []
    for name in cfg.SHARED_SECTIONS:
        section = cfg.Config.model_fields[name].annotation
        out.append((f"`{name}`", f"Stage: {cfg.STAGE_OF_SECTION.get(name, name)}.", walk(section, name), ""))
    for family in cfg.family_names():
        section = cfg.section_of(family)
        text = [f"`model.family: {family}` ({section.__module__.replace('.', '/')}.py, `{section.__name__}`). "
                + _first_paragraph(section.__doc__)]
        extra = sorted(section.reads)
        text.append("Optional shared keys it reads: " + (", ".join(f"`{k}`" for k in extra) if extra else "none") + ".")
        if section.loss_defining:
            text.append("Loss-defining fields (a change makes a row's loss \"not comparable\"): "
                        + ", ".join(f"`{k}`" for k in section.loss_defining) + ".")
        out.append((f"`model` of `{family}`", " ".join(text), walk(section, "model"), family))
    user = cfg.UserFamilySection
    out.append(("`model` of a user's family (`package.module:ClassName`)",
                _first_paragraph(user.__doc__) + " It reads every optional shared key.", walk(user, "model"),
                "package.module:ClassName"))
    return out


def config_reference() -> str:
    """The Markdown of every section's table; MissingDescription names each key without a description."""
    parts, missing = [], []
    for title, text, rows, family in sections():
        missing += [f"{key} (model.family {family})" if family else key for key in missing_descriptions(rows)]
        parts.append(f"## {title}\n\n{text}\n\n{table(rows)}\n")
    if missing:
        raise MissingDescription(sorted(set(missing)))
    return "\n".join(parts)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:  # mkdocs event
    if MARKER not in markdown:
        return markdown
    from mkdocs.exceptions import PluginError

    try:
        return markdown.replace(MARKER, config_reference())
    except MissingDescription as err:
        raise PluginError(f"{page.file.src_uri}: {err}") from None
