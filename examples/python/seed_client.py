# SPDX-License-Identifier: MIT
"""The seed's NamedPipeClient in Python: connect to \\\\.\\pipe\\tpipe (or
\\\\HOST\\pipe\\NAME), switch to message read mode, send, print the reply."""
import sys

import npipe

name = sys.argv[1] if len(sys.argv) > 1 else r"\\.\pipe\tpipe"
message = sys.argv[2] if len(sys.argv) > 2 else "Default message from client."
try:
    with npipe.connect(name, timeout=5.0) as pipe:
        pipe.read_mode = npipe.ReadMode.MESSAGE
        pipe.write(message.encode())
        print(f"Response received: [{pipe.receive().decode()}]")
except npipe.Error as e:
    sys.exit(f"{e.status_name}: {e.strerror}")
