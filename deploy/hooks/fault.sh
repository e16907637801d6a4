#!/bin/sh
# fo `fault` hook: this node may not serve (a gate failed); stop the stack here.
exec "$(dirname "$0")/compose.sh" down
