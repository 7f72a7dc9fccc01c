/**
 * The job engines Mercato knows, declared once. Every schema that names an engine (the wire
 * spec, the HTTP body and its OpenAPI document, the config file) derives its enum from this list,
 * so adding an engine is one line here plus its executor.
 */
export const ENGINES = ['wasm', 'js'] as const
export type Engine = typeof ENGINES[number]
