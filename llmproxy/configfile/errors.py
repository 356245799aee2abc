from typing import NamedTuple


class Problem(NamedTuple):
    line: int
    message: str


class ConfigError(Exception):
    """A config file that cannot be applied: every problem found, each with its line."""

    def __init__(self, source, problems):
        self.source = source
        self.problems = sorted(problems, key=lambda p: p.line)
        super().__init__(str(self))

    def __str__(self):
        count = len(self.problems)
        heading = f"{self.source}: {count} problem{'s' if count != 1 else ''}, nothing written"
        return "\n".join([heading, *(f"  line {p.line}: {p.message}" for p in self.problems)])


class ScopeError(Exception):
    """--tenant names a tenant that is neither in the file nor in the database."""
