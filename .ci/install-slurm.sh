#!/usr/bin/env bash
# Installs Debian's Slurm (slurm-wlm: slurmctld, slurmd, sbatch, squeue, sinfo, scancel) and munge for
# the Slurm backend test (test/slurm/slurm.test.ts starts a one-node cluster itself) when they are
# missing. Idempotent: does nothing when they are there.
set -euo pipefail
if [ -x /usr/sbin/slurmctld ] && [ -x /usr/sbin/slurmd ] && [ -x /usr/sbin/munged ] && [ -x /usr/bin/sbatch ]; then
  /usr/sbin/slurmctld -V
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq slurm-wlm munge
/usr/sbin/slurmctld -V
