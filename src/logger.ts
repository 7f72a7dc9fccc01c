/**
 * Structured logging. One root pino logger per process; each component asks
 * for a logger scoped as `mercato:<component>` (e.g. `mercato:auction:provider`).
 * Nothing in src logs with console.*.
 *
 * Component loggers are made lazily from the current root: a module may create
 * its logger at import time, and still follow the level and the PeerId that the
 * CLI sets later with {@link configureLogger}.
 */
import { pino, type Logger, type LevelWithSilent } from 'pino'

export type { Logger }

// logs go to stderr from the first line on: stdout belongs to command output (`mercato exec --json` prints one JSON document there)
let root: Logger = pino({
  name: 'mercato',
  level: process.env.MERCATO_LOG_LEVEL ?? (process.env.NODE_ENV === 'test' ? 'silent' : 'info'),
  base: { pid: process.pid }
}, pino.destination(2))
let generation = 0
let rootPeerId: string | undefined

/** Reconfigure the root logger (the CLI calls this after reading config, and again once the PeerId is known). */
export function configureLogger (opts: { level?: LevelWithSilent | string, peerId?: string, destination?: NodeJS.WritableStream } = {}): Logger {
  const base: Record<string, unknown> = { pid: process.pid }
  if (opts.peerId != null) base.peerId = opts.peerId
  rootPeerId = opts.peerId
  root = pino({ name: 'mercato', level: opts.level ?? root.level, base }, opts.destination as any ?? pino.destination(2))
  generation++
  return root
}

/** A logger for one component, scoped `mercato:<component>`, that follows the current root. */
export function logger (component: string, bindings: Record<string, unknown> = {}): Logger {
  let child: Logger | undefined
  let made = -1
  const current = (): Logger => {
    if (made !== generation || child == null) {
      // the root already names the node: do not repeat the same PeerId on the line
      const { peerId, ...rest } = bindings
      child = root.child({ component: `mercato:${component}`, ...(peerId !== undefined && peerId !== rootPeerId ? { peerId } : {}), ...rest })
      made = generation
    }
    return child
  }
  return new Proxy({} as Logger, {
    get (_target, prop) {
      const target = current()
      const value = (target as any)[prop]
      return typeof value === 'function' ? value.bind(target) : value
    }
  })
}
