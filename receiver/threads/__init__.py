"""Threading: which messages share a conversation (links), and who replies to whom (tree).

Pure functions here; the incremental, order-independent state lives in receiver/store.
"""
