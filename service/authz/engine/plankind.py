"""A kind template (`order:*`): every id that starts with its prefix, the rest the field `id`."""

from __future__ import annotations

from dataclasses import dataclass

from authz.engine import planast
from authz.engine.planerrors import Unplannable
from authz.engine.planpath import Template
from authz.engine.plansegments import NO_ROW, REGEX, RowTest, single_line

KIND_PARAM = "id"


@dataclass(frozen=True)
class KindTemplate(Template):
    """A kind such as `order:*`: every id that starts with the prefix; the rest is the field `id`."""

    prefix: str = ""

    @property
    def concrete(self) -> bool:
        """A kind stands for many resources."""
        return False

    @property
    def literal(self) -> str:
        """What every row's id starts with."""
        return self.prefix

    @property
    def names(self) -> tuple[str, ...]:
        """The one parameter: the rest of the id."""
        return (KIND_PARAM,)

    def equals(self, value: str) -> RowTest:
        """The rows whose id is `value`: `id == <the rest>` (empty too: the row `order:` with the
        id `` is `r.obj == "order:"`)."""
        if value.startswith(self.prefix):
            return RowTest(planast.Compare("eq", KIND_PARAM, value[len(self.prefix) :]))
        return NO_ROW

    def key_match2(self, pattern: str) -> RowTest:
        """keyMatch2 against a kind: a plain id, a `prefix/*` covering the kind, or no row."""
        found = REGEX.search(pattern)
        start = pattern[: found.start()] if found else pattern
        if not (start.startswith(self.prefix) or self.prefix.startswith(start)):
            return NO_ROW
        if found is None:
            return RowTest(planast.any_of(self.equals(pattern).true, self.equals(pattern + "\n").true))
        if pattern.endswith("/*") and not REGEX.search(pattern[:-1]) and self.prefix.startswith(pattern[:-1]):
            return RowTest(planast.all_of(*single_line((KIND_PARAM,))))
        raise Unplannable(f"keyMatch2 pattern {pattern!r} against the kind {self.text!r}")

    def key_match(self, pattern: str) -> RowTest:
        """keyMatch (`*`: any suffix) against a kind."""
        star = pattern.find("*")
        if star == -1:
            return self.equals(pattern)
        prefix = pattern[:star]
        if self.prefix.startswith(prefix):
            return RowTest(planast.TRUE)
        if not prefix.startswith(self.prefix):
            return NO_ROW
        raise Unplannable(f"keyMatch prefix {prefix!r} ending inside the id of the kind {self.text!r}")
