"""The talk tests' synthetic person with a trained head, and speech to render."""

from tests.talk.conftest import trained, wav  # noqa: F401  (fixtures)
