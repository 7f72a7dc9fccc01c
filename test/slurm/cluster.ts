/**
 * A one-node Slurm cluster for tests, in a temp dir: munged with a generated
 * key, a generated slurm.conf (controller and node bound to 127.0.0.1 on free
 * ports), `slurmctld -D` and `slurmd -D` in the background. Needs root and
 * Debian's slurm-wlm + munge (.ci/run installs them). `stop()` cancels every
 * job, stops the daemons and deletes the dir.
 */
import { spawn, spawnSync, execFile, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { accessSync, constants } from 'node:fs'
import { chmod, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises'
import { hostname, tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { freePort } from '../helpers/ports.js'

const TOOLS = ['munged', 'slurmctld', 'slurmd', 'sbatch', 'squeue', 'sinfo', 'scancel']

export interface SlurmCluster {
  dir: string
  conf: string
  /** CPUs of the one node */
  cpus: number
  /** run a Slurm command against this cluster */
  cmd: (command: string, args: string[]) => Promise<string>
  stop: () => Promise<void>
}

function onPath (tool: string): boolean {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/sbin', '/usr/bin']
  return dirs.some(d => { try { accessSync(join(d, tool), constants.X_OK); return true } catch { return false } })
}

/** Why a cluster cannot start here (undefined: it can try). */
export function clusterUnavailable (): string | undefined {
  if (process.platform !== 'linux') return 'Slurm test cluster needs Linux'
  if (process.getuid?.() !== 0) return 'Slurm test cluster needs root (slurmd runs jobs as their user)'
  const missing = TOOLS.filter(t => !onPath(t))
  if (missing.length > 0) return `Slurm test cluster needs ${missing.join(', ')} (apt-get install -y slurm-wlm munge)`
  return undefined
}


async function waitFor (cond: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`${what} not ready in ${timeoutMs} ms`)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}

async function stopProc (p: ChildProcess | undefined): Promise<void> {
  if (p == null || p.exitCode != null || p.signalCode != null) return
  const exited = new Promise<void>(resolve => { p.once('exit', () => { resolve() }) })
  p.kill('SIGTERM')
  const timer = setTimeout(() => { p.kill('SIGKILL') }, 5000)
  await exited
  clearTimeout(timer)
}

export async function startSlurmCluster (): Promise<SlurmCluster> {
  const why = clusterUnavailable()
  if (why != null) throw new Error(why)
  const dir = await mkdtemp(join(tmpdir(), 'mercato-slurm-'))
  const procs: ChildProcess[] = []
  const conf = join(dir, 'slurm.conf')
  const env = { ...process.env, SLURM_CONF: conf }
  const cmd = async (command: string, args: string[]): Promise<string> => await new Promise((resolve, reject) => {
    execFile(command, args, { env, timeout: 15_000 }, (err, stdout, stderr) => {
      if (err != null) reject(new Error(`${command} ${args.join(' ')}: ${String(stderr).trim() || err.message}`)); else resolve(stdout)
    })
  })
  const logs: Record<string, string> = {}
  const daemon = (name: string, args: string[]): ChildProcess => {
    const p = spawn(name, args, { env, stdio: ['ignore', 'pipe', 'pipe'] })
    logs[name] = ''
    p.stdout?.on('data', (d) => { logs[name] += String(d) })
    p.stderr?.on('data', (d) => { logs[name] += String(d) })
    p.on('error', (err) => { logs[name] += String(err) })
    procs.push(p)
    return p
  }
  const stop = async (): Promise<void> => {
    // jobs first (their slurmstepd outlive slurmd), then the daemons, then the dir
    if (procs.length >= 3) {
      await cmd('scancel', ['--full', '--quiet', '-u', 'root']).catch(() => {})
      await waitFor(async () => (await cmd('squeue', ['-h', '-t', 'RUNNING,COMPLETING,PENDING', '-o', '%i']).catch(() => '')).trim() === '', 10_000, 'job cancel').catch(() => {})
    }
    for (const p of [...procs].reverse()) await stopProc(p)
    await rm(dir, { recursive: true, force: true })
  }
  try {
    const key = join(dir, 'munge.key')
    await writeFile(key, randomBytes(1024))
    await chmod(key, 0o400)
    await mkdir(join(dir, 'state'))
    await mkdir(join(dir, 'spool'))
    const sock = join(dir, 'munge.sock')
    daemon('munged', ['-F', '--force', `--key-file=${key}`, `--socket=${sock}`, `--pid-file=${join(dir, 'munged.pid')}`, `--log-file=${join(dir, 'munged.log')}`, `--seed-file=${join(dir, 'munge.seed')}`])
    await waitFor(async () => await stat(sock).then(() => true, () => false), 10_000, `munged (${logs.munged})`)
    const probe = spawnSync('slurmd', ['-C'], { encoding: 'utf8' })
    const nodeLine = probe.stdout.split('\n').find(l => l.startsWith('NodeName='))
    if (nodeLine == null) throw new Error(`slurmd -C printed no node line: ${probe.stderr}`)
    const node = hostname().split('.')[0]
    const cpus = Number(/CPUs=(\d+)/.exec(nodeLine)?.[1] ?? '1')
    const [ctldPort, dPort] = [await freePort(), await freePort()]
    await writeFile(conf, [
      'ClusterName=mercatotest',
      `SlurmctldHost=${node}(127.0.0.1)`,
      `SlurmctldPort=${ctldPort}`,
      `SlurmdPort=${dPort}`,
      // bind to 127.0.0.1 only, never to every address
      'CommunicationParameters=NoCtldInAddrAny,NoInAddrAny',
      'SlurmUser=root',
      'SlurmdUser=root',
      'AuthType=auth/munge',
      `AuthInfo=socket=${sock}`,
      'CredType=cred/munge',
      'ProctrackType=proctrack/linuxproc',
      'TaskPlugin=task/none',
      'SelectType=select/cons_tres',
      'SelectTypeParameters=CR_Core',
      'AccountingStorageType=accounting_storage/none',
      'JobAcctGatherType=jobacct_gather/none',
      'JobCompType=jobcomp/filetxt',
      `JobCompLoc=${join(dir, 'jobcomp.txt')}`,
      'MinJobAge=3600',
      'MpiDefault=none',
      'ReturnToService=2',
      `StateSaveLocation=${join(dir, 'state')}`,
      `SlurmdSpoolDir=${join(dir, 'spool')}`,
      `SlurmctldPidFile=${join(dir, 'slurmctld.pid')}`,
      `SlurmdPidFile=${join(dir, 'slurmd.pid')}`,
      `SlurmctldLogFile=${join(dir, 'slurmctld.log')}`,
      `SlurmdLogFile=${join(dir, 'slurmd.log')}`,
      `${nodeLine.replace(/^NodeName=\S+/, `NodeName=${node} NodeAddr=127.0.0.1`)} State=UNKNOWN`,
      `PartitionName=mercato Nodes=${node} Default=YES MaxTime=INFINITE State=UP`,
      ''
    ].join('\n'))
    daemon('slurmctld', ['-D', '-f', conf])
    daemon('slurmd', ['-D', '-f', conf])
    await waitFor(async () => /idle/.test(await cmd('sinfo', ['-h', '-o', '%T']).catch(() => '')), 30_000, 'slurm node')
    return { dir, conf, cpus, cmd, stop }
  } catch (err: any) {
    await stop().catch(() => {})
    const tail = Object.entries(logs).map(([k, v]) => `${k}: ${v.trim().split('\n').slice(-2).join(' | ')}`).filter(s => !s.endsWith(': ')).join('; ')
    throw new Error(`Slurm test cluster did not start: ${String(err?.message ?? err).split('\n')[0]}${tail !== '' ? ` (${tail})` : ''}`)
  }
}
