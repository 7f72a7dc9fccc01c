#!/usr/bin/env bash
# Installs bubblewrap when it is missing, so the outer-isolation tests of `executor.isolation:
# "bwrap"` (test/executor/isolation.test.ts) run instead of skipping. Idempotent.
set -euo pipefail
command -v bwrap >/dev/null 2>&1 && exit 0
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq bubblewrap >/dev/null
echo "installed for the isolation tests: bubblewrap"
