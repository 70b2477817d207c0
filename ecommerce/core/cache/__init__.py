"""The catalog cache: the shared store on Redis or in process (store.py), and each worker's copy
of its hot entries, kept coherent by Redis (local.py)."""
