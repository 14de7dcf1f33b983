"""Search spaces: `denas.spaces.get(name, overrides)` is a registry lookup.

Importing a space module registers it; each module's top holds its table of choices (``DEFAULTS``)
and named ``PRESETS``.
"""

# the asr space takes log-mel features as input, so it needs torch only (torchaudio stays in the
# data pipeline)
from denas.spaces import asr, cnn, nb201, vit  # noqa: F401  (registration side effect)
from denas.spaces.base import SearchSpace, Structure, StructureError, get, names, register

try:  # optional extra: the bert space is built on transformers' BertModel
    from denas.spaces import bert, huggingface  # noqa: F401
except ImportError:  # pragma: no cover - depends on installed extras
    pass

__all__ = ["SearchSpace", "Structure", "StructureError", "get", "names", "register"]
