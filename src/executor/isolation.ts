import type { Engine, ExecJob, ExecResult, Executor, ExecutorInit, ExecutorStats } from './index.js'

/** Placeholder: replaced below once the child-process pool exists. */
export class IsolatedExecutor implements Executor {
  constructor (readonly init: ExecutorInit) {}
  async run (_job: ExecJob): Promise<ExecResult> { throw new Error('not implemented') }
  stats (): ExecutorStats { return { poolSize: 0, busy: 0, queued: 0, completed: 0, failed: 0 } }
  engines (): Engine[] { return this.init.engines }
  async start (): Promise<void> {}
  async stop (): Promise<void> {}
}
