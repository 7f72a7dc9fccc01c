/**
 * A stand-in for `mercato` in CLI tests: a commander program with only the
 * exec command (src/cli.ts, owned elsewhere, registers the same command).
 */
import { Command } from 'commander'
import { registerExecCommand } from '../../src/executor/cli.js'

const program = new Command('mercato')
registerExecCommand(program)
await program.parseAsync(process.argv)
