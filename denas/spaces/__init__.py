"""Search spaces: `denas.spaces.get(name, overrides)` is a registry lookup."""

# Importing a space module registers it. Each module's top holds its table of choices.
from denas.spaces import cnn, nb201, vit  # noqa: E402,F401  (registration side effect)
from denas.spaces.base import SearchSpace, Structure, StructureError, get, names, register

try:  # optional extras: `bert` needs transformers, `asr` needs torchaudio
    from denas.spaces import bert  # noqa: F401
except ImportError:  # pragma: no cover - depends on installed extras
    pass
try:
    from denas.spaces import asr  # noqa: F401
except ImportError:  # pragma: no cover
    pass

__all__ = ["SearchSpace", "Structure", "StructureError", "get", "names", "register"]
