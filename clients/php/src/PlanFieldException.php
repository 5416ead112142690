<?php

declare(strict_types=1);

namespace Authz;

/**
 * A plan cannot become a query: it reads a field that maps to no column, or it is
 * malformed (an unknown node or operator, a null value). The query is refused, never
 * run with the filter left out.
 */
final class PlanFieldException extends \InvalidArgumentException
{
}
