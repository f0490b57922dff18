"""embd_client: the Python client of embd (rows of an embedding matrix served over HTTP).

    from embd_client import Client, EmbdError
    with Client("http://127.0.0.1:8080") as c:
        rows = c.rows([3, 17, 42])            # np.ndarray (3, dim), the table's dtype

Standard library and NumPy; torch only for bf16 answers and torch inputs (imported when used), and for
embd_client.torch (PyTorch datasets).
"""
from .client import DEFAULT_LIMITS, Client, charge_bound_ids
from .errors import EmbdConnectionError, EmbdError, EmbdTimeout

__version__ = "0.1.0"
__all__ = ["Client", "EmbdError", "EmbdTimeout", "EmbdConnectionError", "DEFAULT_LIMITS", "charge_bound_ids"]
