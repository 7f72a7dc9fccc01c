import { MercatoError } from '../errors.js'

/** A message exceeded the size cap of its protocol. */
export class MessageTooLargeError extends MercatoError {
  constructor (message = 'Message too large') {
    super(message, { code: 'message-too-large', status: 413, name: 'MessageTooLargeError' })
  }
}

/** The remote answered a request with an error frame. */
export class RemoteError extends MercatoError {
  readonly remoteCode: string
  constructor (message: string, remoteCode: string) {
    super(message, { code: 'remote-error', status: 502, name: 'RemoteError' })
    this.remoteCode = remoteCode
  }
}

/** A request did not complete in time. */
export class RequestTimeoutError extends MercatoError {
  constructor (message = 'Request timed out') {
    super(message, { code: 'timeout', status: 504, retryable: true, name: 'RequestTimeoutError' })
  }
}

/** The peer could not be reached. */
export class PeerUnreachableError extends MercatoError {
  constructor (message: string, cause?: unknown) {
    super(message, { code: 'peer-unreachable', status: 502, retryable: true, name: 'PeerUnreachableError', cause })
  }
}

/** A private-network key file is missing, unreadable or malformed. */
export class NetworkKeyError extends MercatoError {
  constructor (message: string, cause?: unknown) {
    super(message, { code: 'network-key', status: 500, name: 'NetworkKeyError', cause })
  }
}
