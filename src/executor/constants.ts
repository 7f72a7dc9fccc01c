/**
 * Executor defaults. `config/default.json` ("executor") holds the same values
 * for a provider; these apply when the executor is built without config
 * (tests, `mercato exec`).
 */

/** 0 = one worker per core: a job is CPU-bound and runs on one thread. */
export const POOL_SIZE = 0
/** Jobs waiting for a worker; beyond this run() throws QueueFullError (a decline reason). */
export const QUEUE_SIZE = 64
/** Ceiling on any job's wall-clock limit; a job asking for more is clamped. */
export const MAX_TIMEOUT_MS = 60_000
/** Ceiling on any job's memory cap (wasm linear memory / QuickJS heap). */
export const MAX_MEMORY_MB = 256
/** Ceiling on stdout + stderr (+ JS output JSON) of one job. Each worker keeps a shared buffer of twice this. */
export const MAX_OUTPUT_BYTES = 1024 * 1024
/**
 * While a job runs with a live-output listener, the pool reads what the guest
 * wrote so far (the shared output buffer) this often: live logs arrive within
 * a tenth of a second, and a poll is a couple of Atomics loads when nothing is new.
 */
export const LIVE_OUTPUT_POLL_MS = 100
/** Compiled wasm modules kept (LRU by CID + memory cap + fuel flag). */
export const MODULE_CACHE_SIZE = 64

/** A JS job whose interrupt handler did not stop it is killed this long after its deadline (the 250 ms guarantee includes it). */
export const JS_HARD_KILL_GRACE_MS = 100
/**
 * Workers started with the pool and kept while idle. One warm worker serves a
 * job on an idle node at once (a cold worker takes 30–100 ms to start
 * compiled, most of it loading QuickJS) and costs ≈ 10 MiB; more start on
 * demand up to the pool size. 0 = no worker until the first job.
 */
export const WARM_WORKERS = 1
/** A worker beyond the warm ones stops after this long without a job, returning its memory. */
export const WORKER_IDLE_MS = 30_000
/** How long start() waits for a worker to report ready before failing. */
export const WORKER_START_TIMEOUT_MS = 30_000
/** A worker whose last job used more guest memory than this is replaced, so its RSS returns to the OS. */
export const RECYCLE_MEMORY_BYTES = 64 * 1024 * 1024
/** V8 heap of a worker (guest memory is wasm memory, outside this): room for large stdin/args. */
export const WORKER_HEAP_MB = 128
/**
 * The longest guest string a js job's host functions copy into the worker's heap at once (UTF-16
 * units, 1 Mi: at most 3 MiB as UTF-8). A guest string is always measured before it is copied:
 * V8 does not stop a worker that makes one allocation too large for WORKER_HEAP_MB, it aborts the
 * whole process, so a job writing a 180 MiB string with writeFile, or reading a 200 MB input
 * with readFile(path, 'utf8'), took the provider down. Longer texts cross in pieces.
 */
export const JS_HOST_STRING_UNITS = 1024 * 1024
/** The longest return value of a js job's main, as JSON text (UTF-16 units): larger results belong in output files. */
export const JS_RESULT_MAX_UNITS = 16 * 1024 * 1024
/** The longest name, message or stack of a js job's uncaught exception that is copied for its report (longer: its length only). */
export const JS_ERROR_TEXT_UNITS = 64 * 1024

/**
 * QuickJS stack cap. FACTS.md: above ≈ 384 KiB V8's own stack can overflow
 * and crash the host; workers have smaller native stacks than the main thread,
 * so stay well under.
 */
export const JS_STACK_BYTES = 256 * 1024

/**
 * Module budget: what a module can make the engine allocate before or
 * outside its linear memory, checked on the bytes before compiling (see
 * wasm-module.ts). Every figure is far above what a real WASI program uses
 * (a clang or rustc program: 1 table of a few thousand entries, a handful of
 * globals and data segments) and far below V8's own limits, which are sized
 * for browsers, not for a provider running strangers' code next to its node.
 *
 * Tables: V8 holds ≈ 31 bytes per funcref element (measured: a 7 M-entry
 * table, 59 bytes of module, took +218 MB of RSS, outside every other
 * limit). Table elements are charged TABLE_ELEMENT_BYTES each against the
 * job's memory cap (the first TABLE_FREE_BYTES are free, so a program's
 * small function table does not cost it a whole memory page).
 */
export const MAX_TABLES = 8
/** Table elements of a module in total (declared maxima after capping). wasmtime's pooling default is 20 000 per table. */
export const MAX_TABLE_ELEMENTS = 100_000
export const TABLE_ELEMENT_BYTES = 32
export const TABLE_FREE_BYTES = 65536
/** Entries in all element segments (measured: instantiating 1 M active entries takes ≈ 8 s of native code). */
export const MAX_ELEMENT_ENTRIES = 100_000
export const MAX_ELEMENT_SEGMENTS = 10_000
export const MAX_DATA_SEGMENTS = 10_000
/** Functions, imported + defined (measured: 500 000 empty functions, 2 MB of module, compile in 2 s and take +41 MB). */
export const MAX_FUNCTIONS = 100_000
/** Locals of one function, and of all functions together (compile time and frame size grow with them). */
export const MAX_FUNCTION_LOCALS = 50_000
export const MAX_TOTAL_LOCALS = 4_000_000
/**
 * A function's locals times its deepest block nesting. V8's baseline compiler copies the locals'
 * state at every open block, about 26 bytes a unit here (1,000 locals in 1,000 nested ifs: +25 MB
 * while compiling; 50,000 in 1,000: 1.26 GB from a 5 KB module), outside the job's memory cap and
 * the worker's heap. Compilers' output stays far below: thousands of locals, nesting in the tens.
 */
export const MAX_LOCALS_TIMES_NESTING = 1_000_000
export const MAX_GLOBALS = 10_000
export const MAX_IMPORTS = 1_000
export const MAX_EXPORTS = 10_000
export const MAX_TYPES = 10_000

/** Virtual clock start (2024-01-01T00:00:00Z): what guests see as "now". */
export const VIRTUAL_EPOCH_MS = 1_704_067_200_000
/** Each WASI clock read advances the virtual clock by this much (so busy-waits end deterministically). */
export const WASI_CLOCK_TICK_NS = 1000n
/** Each JS Date.now() / new Date() advances the virtual clock by this much. */
export const JS_CLOCK_TICK_MS = 1

/** Initial value of the fuel global before the host sets the job's budget (covers a module start function). */
export const FUEL_UNMETERED = (1n << 62n)

/** WASI import namespace we implement. */
export const WASI_MODULE = 'wasi_snapshot_preview1'
/** Exports the instrumenter adds. */
export const FUEL_EXPORT = '__mercato_fuel'
export const GROW_FAILED_EXPORT = '__mercato_grow_failed'

/**
 * Output files (a wasm job's `/outputs`, a JS job's `writeFile`). They go to the provider's disk as
 * the guest writes them (the job's staging folder, `<dataDir>/outputs/<job>`), are stored as UnixFS
 * blobs (256 KiB blocks) and fetched block by block, so no figure here is held in memory anywhere:
 * the caps bound the provider's disk and what a requester fetches for one result.
 * - 256 MiB a file: the input cap (provider.inputs.maxFileBytes), so a job can hand back a file as
 *   large as one it was given (the benchmark's 100 MiB in, 100 MiB out), with room to spare.
 * - 1 GiB a job: the input total (provider.inputs.maxTotalBytes); at the requester's slowest
 *   accepted pace (auction OUTPUT_FETCH_MIN_BYTES_PER_SEC, 1 MiB/s) that is 17 minutes of fetching.
 * - 64 files: each is a blob, a line in the signed result and a fetch; plenty for a job's report,
 *   data and logs.
 * Every provider must apply the same caps for replicas to agree on a job that hits one, so these
 * are market-wide defaults; a provider may lower them (executor.outputFiles), not raise them.
 */
export const MAX_OUTPUT_FILES = 64
export const MAX_OUTPUT_FILE_BYTES = 256 * 1024 * 1024
export const MAX_OUTPUT_TOTAL_BYTES = 1024 * 1024 * 1024
/** Longest output path (UTF-8 bytes): room for a few directory levels, far below what any tool chokes on. */
export const MAX_OUTPUT_PATH_BYTES = 256
/**
 * Directories a job's output tree may hold (made by mkdir or as the parents of its files). The
 * tree lives in the worker's heap: uncapped, a 524-byte wasm job making 255-byte paths of a
 * hundred levels in a loop filled the worker's heap in 4 s, and V8 then aborted the provider.
 * 64 files of 128 levels each need 8,192.
 */
export const MAX_OUTPUT_DIRS = 8192
/** A write past a file's end fills the gap with zeros as it goes, this many bytes at a time (the guest's time pays for them, not the import after it). */
export const OUTPUT_GAP_FILL_BYTES = 1024 * 1024
/** Output files a wasm guest may hold open at once (descriptors beyond stdio and the /outputs preopen). */
export const MAX_OPEN_OUTPUT_FDS = 32
/** Where a wasm guest finds its output directory (preopened, fd 3). */
export const OUTPUTS_DIR = '/outputs'

/**
 * Input files: a job's inputs are mounted read-only under this directory (wasm: the second
 * preopened directory, fd 4, after /outputs; js: readFile/listFiles name paths relative to it).
 */
export const INPUTS_DIR = '/inputs'
/** Most input files a job may name (each is a path, a CID or a URL in the signed offer: they must fit in it). */
export const MAX_JOB_INPUTS = 64
/** Ranges one input given as extents may have (a 1 GiB blob read in place: a few dozen, one a leaf at worst, 4,096). */
export const MAX_INPUT_EXTENTS = 16_384
/**
 * Files the ranges of one input may lie in: each is a descriptor open while the job runs (a 1 GiB
 * blob fetched at once lies in at most five 256 MiB packs; a DAG whose leaves are scattered over
 * many packs is copied instead, not given a descriptor per pack).
 */
export const MAX_INPUT_EXTENT_FILES = 16
/** Input files (and directories) a wasm guest may have open at once. */
export const MAX_OPEN_INPUT_FDS = 32
