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

    /// What an operator reads: the operation, the error in words, and libssh2's own message when
    /// it adds something (its generic "Unexpected error" does not), then the code for reference.
    public var description: String {
        let words = Self.words(for: code)
        let generic =
            message.isEmpty || message == "Unexpected error" || message.hasPrefix("libssh2 error") || words == nil
        var text = "\(operation): \(words ?? (message.isEmpty ? "error" : message))"
        if !generic && message.lowercased() != words?.lowercased() { text += " (\(message))" }
        return code == 0 ? text : text + " [libssh2 error \(code)]"
    }

    /// libssh2's error codes in words (the codes are stable across 1.10 and 1.11; written as
    /// numbers because 1.10's header lacks the newest ones).
    public static func words(for code: Int32) -> String? {
        switch code {
        case -1: return "no socket"
        case -2: return "the server sent no SSH banner (closed the connection, or is not an SSH server)"
        case -3: return "could not send our SSH banner"
        case -4: return "a packet failed its integrity check (MAC)"
        case -5, -8: return "key exchange failed (no algorithm in common, or the server closed during it)"
        case -6: return "out of memory"
        case -7: return "could not send to the server (connection reset or closed)"
        case -9, -30: return "timed out"
        case -10: return "could not use the server's host key"
        case -11: return "the server's host key signature did not verify"
        case -12, -44: return "encryption or decryption failed"
        case -13: return "the server disconnected"
        case -14: return "SSH protocol error"
        case -15: return "the password has expired"
        case -16: return "cannot read the key file"
        case -17: return "no authentication method available"
        case -18: return "authentication refused by the server"
        case -19: return "the server did not accept the key's signature"
        case -20: return "channel packets out of order"
        case -21: return "the server refused the channel (nothing listening there, or forwarding not allowed)"
        case -22: return "the server denied the channel request"
        case -23: return "unknown channel"
        case -24: return "channel window exceeded"
        case -25: return "channel packet too large"
        case -26: return "the channel is closed"
        case -27: return "end of data already sent on the channel"
        case -32: return "the server denied the request"
        case -33: return "method not supported"
        case -34: return "invalid argument"
        case -36: return "public key protocol error"
        case -37: return "would block"
        case -38: return "buffer too small"
        case -39: return "libssh2 used out of order (a half-sent packet was not completed first)"
        case -40: return "compression failed"
        case -41: return "out of bounds"
        case -42: return "ssh-agent protocol error"
        case -43: return "connection closed by the server"
        case -45: return "bad socket"
        case -46: return "known_hosts error"
        case -47: return "channel window full"
        case -48: return "could not use the key file (wrong passphrase, or a format libssh2 cannot read)"
        case -49: return "random number generation failed"
        case -50: return "the server's user authentication banner is missing"
        case -51: return "algorithm not supported"
        default: return nil
        }
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
