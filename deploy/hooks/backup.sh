#!/bin/sh
# fo `backup` hook: another node serves the VIPs; stop the stack here.
exec "$(dirname "$0")/compose.sh" down
