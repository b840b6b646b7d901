#if canImport(Glibc)
import Glibc
#endif

/// An errno value and the operation that failed: the one error type of the syscall layer (as
/// swift-system's `Errno`, with the call named for the log).
public struct SystemError: Error, Sendable, Equatable, CustomStringConvertible {
    public var code: Int32
    public var operation: String

    public init(_ code: Int32, _ operation: String) {
        self.code = code
        self.operation = operation
    }

    public var description: String { "\(operation): \(String(cString: strerror(code))) (errno \(code))" }
    /// The message alone, e.g. "Connection refused".
    public var message: String { String(cString: strerror(code)) }
}

/// The result of a non-blocking call: progress, or "try again when ready" as a value, not an
/// error (swift-nio's `IOResult`).
public enum SyscallResult<T> {
    case wouldBlock
    case done(T)
}

/// The one place that turns a C call's `-1`/`errno` into Swift (the model: swift-nio's
/// `System.swift`): `EINTR` is retried, `EAGAIN`/`EWOULDBLOCK` is `.wouldBlock` for the
/// non-blocking forms, anything else is a thrown `SystemError` naming the call. Every module
/// uses it; the tunnel drivers through their thin `Posix` socket layer (docs/architecture.md).
public enum Syscall {
    /// A call on a non-blocking descriptor (`read`, `recv`, `send`, `accept4`, …). Inlinable:
    /// it wraps every read and write of the forwarding path, in other modules, and as an opaque
    /// generic call it showed in the churn profile.
    @inlinable @inline(__always)
    public static func nonBlocking<T: FixedWidthInteger>(
        _ operation: @autoclosure () -> String, _ call: () -> T
    ) throws(SystemError)
        -> SyscallResult<T>
    {
        while true {
            let result = call()
            if result >= 0 { return .done(result) }
            let code = errno
            if code == EINTR { continue }
            if code == EAGAIN || code == EWOULDBLOCK { return .wouldBlock }
            throw SystemError(code, operation())
        }
    }

    /// A call that may block (or whose would-block is an error for the caller: a socket with
    /// SO_RCVTIMEO reports its timeout as EAGAIN).
    @inlinable @inline(__always)
    public static func blocking<T: FixedWidthInteger>(
        _ operation: @autoclosure () -> String, _ call: () -> T
    ) throws(SystemError) -> T {
        while true {
            let result = call()
            if result >= 0 { return result }
            let code = errno
            if code == EINTR { continue }
            throw SystemError(code, operation())
        }
    }

    /// Closes `fd`. Never retried on EINTR (Linux frees the descriptor anyway; a retry could
    /// close a number another thread just got). EBADF means this descriptor was closed already
    /// or was never ours: with descriptors moving between threads that is a bug that could close
    /// someone else's file, so a debug build stops there.
    public static func close(_ fd: Int32) {
        if Glibc.close(fd) != 0 && errno == EBADF {
            assertionFailure("close(\(fd)): EBADF, the descriptor was not open (closed twice?)")
        }
    }
}

/// A descriptor that is open, instead of an `Int32` with `-1` for "none" (use an optional).
/// swift-system's `FileDescriptor`, without its API: the raw value goes to the C calls.
public struct Descriptor: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int32

    /// nil for a negative value (a failed call's result).
    public init?(rawValue: Int32) {
        guard rawValue >= 0 else { return nil }
        self.rawValue = rawValue
    }

    public var description: String { "fd \(rawValue)" }

    /// Closes it (`Syscall.close`).
    public func close() { Syscall.close(rawValue) }
}
