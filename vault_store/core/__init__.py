"""The pure core: frames and keys, codec, message parsing, parts, packing, coalescing.

Bytes in, bytes or plans out: nothing here imports a database, network, web or task-queue
library, and importing it loads none of them (a test checks `sys.modules` in a subprocess).
"""
