"""What `validate()` raises when an engine's state breaks an invariant (docs/engine.md, "Invariants")."""


class InvariantViolation(AssertionError):
    """The engine's state is inconsistent; the message lists every broken invariant found."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        shown = "\n".join(f"- {p}" for p in self.problems[:20])
        more = f"\n(and {len(self.problems) - 20} more)" if len(self.problems) > 20 else ""
        super().__init__(f"{len(self.problems)} invariant violation(s):\n{shown}{more}")
