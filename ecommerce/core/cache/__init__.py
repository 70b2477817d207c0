"""The catalog cache: what it holds (entries.py), the shared store on Redis or in process
(store.py), the purges after a commit (purge.py), and each worker's copy of its hot entries,
kept coherent by Redis (local.py)."""

# Entries in Redis are pickled as ``ecommerce.core.cache.CachedJSON`` (entries.py says why).
from ecommerce.core.cache.entries import CachedJSON

__all__ = ["CachedJSON"]
