"""The resource template of a plan, and how a line's resource pattern meets it.

A list's rows share a template such as `/api/orders/:id`; a row's resource id is the
template with its path parameters filled in from the row's columns, whatever they hold. For
a policy line the planner asks what Check would compute with that id in `r.obj`:

- `r.obj == "/api/orders/42"` holds for the rows whose `id` is `42` (`r.obj ==
  "/api/orders/a/b"` for the row `a/b`; on several parameters, each way the value's segments
  split among them), for no row when the string cannot be such an id;
- `keyMatch2(r.obj, "/api/orders/:id")` holds for the rows whose `id` is one non-empty
  segment (`[^/]+`: `id != '' AND NOT (id like '%/%')`), `keyMatch2(r.obj, "/api/*")` for
  every row whose parameters hold no line break (the last one may end in one: `.*` takes
  none, `$` matches before a final one), `keyMatch2(r.obj, "/api/orders/42")` for the rows
  whose `id` is `42` (or `42\n`);
- `keyMatch(r.obj, "/api/orders*")` (a string prefix, no regular expression) for every row.

Each answer is a `RowTest` (`plansegments`): where the function holds, and where the
planner cannot tell. The latter are rows whose parameter holds a `/` where the pattern reads
that parameter's segment (`keyMatch2(r.obj, "/api/:a/:b")` on the template `/api/:id`): the
segments no longer line up, and the plan treats such a row as it treats a missing attribute
(an allow line does not list it, a deny line denies it), narrower than Check, never wider.

A kind such as `order:*` stands for every id with that prefix; the rest of an id is the
field `id` (`r.obj == "order:42"` becomes `id == '42'`).

A path template is a `planpath.Template`, a kind a `plankind.KindTemplate`; this module
parses either and gives the condition every parameter's segment puts on the rows.
Anything else about a whole `r.obj` cannot be planned (`planerrors.Unplannable`).
"""

from __future__ import annotations

import functools
import re

from authz.engine import planast
from authz.engine.planast import Node
from authz.engine.plankind import KindTemplate
from authz.engine.planpath import Template
from authz.engine.plansegments import PARAM, one_segment

_PARAM_ANYWHERE = re.compile(r"(^|/):\w+(/|$)|\*")


# Templates of more parameters plan each line with its segment conditions in place.
_MAX_FACTORED_PARAMS = 4


def segment_condition(template: Template) -> Node | None:
    """What keyMatch2's `:name` asks of every parameter of `template` (`one_segment` of each,
    in order): the whole condition a line `/api/orders/:id` puts on the rows of that template,
    which the planner conjoins once after combining the lines (`plan.py`). None for a kind or
    a template without parameters, or of more than a few."""
    if isinstance(template, KindTemplate) or not 0 < len(template.names) <= _MAX_FACTORED_PARAMS:
        return None
    return _segments(template.names)


# Kept per parameter names: at most 4 of them, within the 4,096 characters of a resource.
@functools.lru_cache(maxsize=256)
def _segments(names: tuple[str, ...]) -> Node:
    return planast.all_of(*(one_segment(name) for name in names))


# Kept per text (a resource is at most 4,096 characters, `handlers.MAX_FIELD_CHARS`): a list's
# few templates are parsed once, and their parts (`names`, `literal`) worked out once.
@functools.lru_cache(maxsize=1024)
def parse_template(text: str) -> Template:
    """Split a template into segments; `:name` segments are parameters (names unique).

    A template ending in `*` without parameters (`order:*`) is a kind: the rest of each id
    is the parameter `id`.
    """
    if "\n" in text:
        # keyMatch2 reads a line break in the id apart (`.`, `$`): the plan covers them in the
        # rows' path parameters only.
        raise ValueError("a resource template holds a line break")
    if text.endswith("*") and len(text) > 1 and not _PARAM_ANYWHERE.search(text[:-1]):
        prefix = text[:-1]
        return KindTemplate(text, (text,), (None,), prefix)
    segments = tuple(text.split("/"))
    params = tuple(m.group(1) if (m := PARAM.match(s)) else None for s in segments)
    names = [p for p in params if p]
    if len(set(names)) != len(names):
        raise ValueError(f"resource template {text!r} names a parameter twice")
    return Template(text, segments, params)
