"""The `items`-mode job written as other frameworks' users would write it (bench/peer_compare.py)."""
