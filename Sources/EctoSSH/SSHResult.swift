import CLibSSH2

/// The outcome of a non-blocking libssh2 call: either it finished, or it must be called again
/// (with the same arguments) once the socket is ready in `SSHSession.blockDirections`.
public enum SSHResult<Value> {
    /// libssh2 returned `LIBSSH2_ERROR_EAGAIN`: call again, unchanged, when the socket is ready.
    case wouldBlock
    /// The call completed.
    case done(Value)
}

extension SSHResult: Sendable where Value: Sendable {}

/// An error reported by libssh2: its numeric code and message, plus the operation that failed.
public struct SSHError: Error, Sendable, CustomStringConvertible {
    /// libssh2's `LIBSSH2_ERROR_*` code (negative), or 0 for errors raised by this wrapper.
    public var code: Int32
    /// libssh2's message (from `libssh2_session_last_error`) or the wrapper's own.
    public var message: String
    /// What we were doing, e.g. "handshake", "open channel".
    public var operation: String

    public init(code: Int32, message: String, operation: String) {
        self.code = code
        self.message = message
        self.operation = operation
    }

    public var description: String {
        "\(operation): \(message) (libssh2 error \(code))"
    }

    /// The transport itself failed (socket closed, reset, timed out): the session is gone.
    public var isTransportFailure: Bool {
        switch code {
        case LIBSSH2_ERROR_SOCKET_SEND, LIBSSH2_ERROR_SOCKET_RECV, LIBSSH2_ERROR_SOCKET_DISCONNECT,
            LIBSSH2_ERROR_SOCKET_TIMEOUT, LIBSSH2_ERROR_TIMEOUT, LIBSSH2_ERROR_BANNER_RECV,
            LIBSSH2_ERROR_BANNER_SEND, LIBSSH2_ERROR_BAD_SOCKET, LIBSSH2_ERROR_SOCKET_NONE:
            return true
        default:
            return false
        }
    }

    /// The error concerns one channel only (closed, EOF already sent, refused, window misuse):
    /// that connection ends, the session goes on.
    public var isChannelScoped: Bool {
        switch code {
        case LIBSSH2_ERROR_CHANNEL_FAILURE, LIBSSH2_ERROR_CHANNEL_REQUEST_DENIED, LIBSSH2_ERROR_CHANNEL_UNKNOWN,
            LIBSSH2_ERROR_CHANNEL_WINDOW_EXCEEDED, LIBSSH2_ERROR_CHANNEL_PACKET_EXCEEDED, LIBSSH2_ERROR_CHANNEL_CLOSED,
            LIBSSH2_ERROR_CHANNEL_EOF_SENT:
            return true
        default:
            return false
        }
    }

    /// The server refused a channel open (nothing listening remotely, forwarding prohibited, …).
    public var isChannelRefused: Bool { code == LIBSSH2_ERROR_CHANNEL_FAILURE }

    /// The server rejected our credentials.
    /// The server answered a public key offer with a failure (not a disconnect, not a bad signature).
    public var isPublicKeyRefused: Bool { code == LIBSSH2_ERROR_AUTHENTICATION_FAILED }

    public var isAuthenticationRefused: Bool {
        code == LIBSSH2_ERROR_AUTHENTICATION_FAILED || code == LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED
    }
}

/// Which way the session's socket must become ready before a `wouldBlock` call is retried.
public struct BlockDirections: OptionSet, Sendable {
    public let rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }
    public static let inbound = BlockDirections(rawValue: LIBSSH2_SESSION_BLOCK_INBOUND)
    public static let outbound = BlockDirections(rawValue: LIBSSH2_SESSION_BLOCK_OUTBOUND)
}
