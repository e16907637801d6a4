#!/bin/sh
# fo `master` hook: this node now serves the VIPs; start the stack.
exec "$(dirname "$0")/compose.sh" up
