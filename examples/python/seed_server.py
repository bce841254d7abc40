# SPDX-License-Identifier: MIT
"""The seed's NamedPipeServer in Python: create \\\\.\\pipe\\tpipe in message
mode, wait for a client, read one message of any length (the
ERROR_MORE_DATA loop), reply, flush, disconnect."""
import sys
import time

import npipe

name = sys.argv[1] if len(sys.argv) > 1 else r"\\.\pipe\tpipe"
try:
    with npipe.Server(name) as server, server.accept() as client:
        total, more = 0, True
        while more:  # a message of any length: read on while it says there is more
            chunk, more = client.read(16)
            total += len(chunk)
        print(f"Bytes received: {total}", flush=True)
        client.write(f"npipe {npipe.__version__} | {time.strftime('%Y-%m-%d %H:%M:%S')}".encode())
        client.flush()
except npipe.Error as e:
    sys.exit(f"{e.status_name}: {e.strerror}")
