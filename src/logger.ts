/**
 * Structured logging. One root pino logger per process; each component asks
 * for a child scoped as `mercato:<component>` (e.g. `mercato:auction:bidder`).
 * Nothing in src logs with console.*.
 */
import { pino, type Logger, type LevelWithSilent } from 'pino'

export type { Logger }

let root: Logger = pino({
  name: 'mercato',
  level: process.env.MERCATO_LOG_LEVEL ?? (process.env.NODE_ENV === 'test' ? 'silent' : 'info'),
  base: { pid: process.pid }
})

/** Reconfigure the root logger (the CLI calls this once, after reading config). */
export function configureLogger (opts: { level?: LevelWithSilent | string, peerId?: string, destination?: NodeJS.WritableStream } = {}): Logger {
  const base: Record<string, unknown> = { pid: process.pid }
  if (opts.peerId != null) base.peerId = opts.peerId
  root = pino({ name: 'mercato', level: opts.level ?? root.level, base }, opts.destination as any ?? pino.destination(2))
  return root
}

/** A logger for one component, scoped `mercato:<component>`. */
export function logger (component: string, bindings: Record<string, unknown> = {}): Logger {
  return root.child({ component: `mercato:${component}`, ...bindings })
}
