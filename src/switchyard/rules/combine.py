"""Fold a matcher tree into one predicate: short-circuit ``&&``/``||``, negated leaves."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from switchyard.rules.parser import AllOf, MatcherCall, Node

M = TypeVar("M")


def compile_tree(
    node: Node, build_leaf: Callable[[MatcherCall], Callable[[M], bool]]
) -> Callable[[M], bool]:
    """One closure for the whole tree, leaves built by ``build_leaf`` (negation not applied).

    Operands run left to right and stop at the first that decides, as Traefik's matchersTree.
    """
    if isinstance(node, MatcherCall):
        leaf = build_leaf(node)
        return _negation(leaf) if node.negated else leaf
    operands = [compile_tree(operand, build_leaf) for operand in node.operands]
    return _all_of(operands) if isinstance(node, AllOf) else _any_of(operands)


def _negation(leaf: Callable[[M], bool]) -> Callable[[M], bool]:
    def negated(meta: M) -> bool:
        return not leaf(meta)

    return negated


def _all_of(operands: list[Callable[[M], bool]]) -> Callable[[M], bool]:
    if len(operands) == 2:
        first, second = operands

        def both(meta: M) -> bool:
            return first(meta) and second(meta)

        return both
    chain = tuple(operands)

    def all_of(meta: M) -> bool:
        for operand in chain:
            if not operand(meta):
                return False
        return True

    return all_of


def _any_of(operands: list[Callable[[M], bool]]) -> Callable[[M], bool]:
    if len(operands) == 2:
        first, second = operands

        def either(meta: M) -> bool:
            return first(meta) or second(meta)

        return either
    chain = tuple(operands)

    def any_of(meta: M) -> bool:
        for operand in chain:
            if operand(meta):
                return True
        return False

    return any_of
