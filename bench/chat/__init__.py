"""The chat benchmark's parts: a bare `websockets` baseline server, the load
generator, the scratch-database fixtures and the server launchers.

Driven by ``bench/chat_bench.py``; see its docstring for what is measured.
"""
