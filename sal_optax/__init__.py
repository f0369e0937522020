"""sal_optax: Stress-Aware Learning (arXiv 2508.00098) as an Optax transformation."""

from importlib.metadata import PackageNotFoundError, version

from sal_optax._linen import apply_gradients as apply_gradients
from sal_optax._sal import SALState as SALState
from sal_optax._sal import sal as sal
from sal_optax._state import find_state as find_state

try:
    __version__ = version("sal-optax")
except PackageNotFoundError:  # Imported from a source tree without installing.
    __version__ = "0.0.0"

__all__ = ["SALState", "apply_gradients", "find_state", "sal"]
