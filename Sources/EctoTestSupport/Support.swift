import Foundation
import Glibc

/// The one error type thrown by this module: a kind to match on and a message that says what happened.
public struct TestSupportError: Error, CustomStringConvertible, Sendable {
    /// What went wrong, for tests that want to assert on it.
    public enum Kind: Sendable, Equatable {
        /// A system call failed with this `errno`.
        case system(errno: Int32)
        /// A bounded wait ran out.
        case timeout
        /// The peer closed the connection before the expected bytes arrived.
        case unexpectedEOF
        /// A helper command (ssh-keygen, ssh-add, ...) exited with this status.
        case commandFailed(status: Int32)
        /// A file, binary or line that should exist does not.
        case notFound
        /// A server process exited or never came up.
        case serverFailed
        /// A peer sent something other than what the protocol allows (too much, or garbage).
        case unexpectedData
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }

    /// The `errno` of a failed system call, if that is what this is.
    public var errno: Int32? {
        if case .system(let code) = kind { return code }
        return nil
    }

    public var isTimeout: Bool { kind == .timeout }
    public var isConnectionRefused: Bool { errno == ECONNREFUSED }
    public var isConnectionReset: Bool { errno == ECONNRESET || errno == EPIPE }

    static func system(_ call: String, _ code: Int32 = Glibc.errno) -> TestSupportError {
        TestSupportError(.system(errno: code), "\(call): \(String(cString: strerror(code))) (errno \(code))")
    }
}

/// A value guarded by an `NSLock`.
///
/// `@unchecked Sendable`: the value is only reachable through `withLock`, which holds the lock for the
/// whole access.
final class Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value

    init(_ value: Value) { self.value = value }

    func withLock<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}

extension Duration {
    /// The duration in (fractional) seconds.
    var inSeconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }

    /// Whole milliseconds, rounded up, clamped to `Int32` (for `poll`).
    var pollMilliseconds: Int32 {
        let ms = (inSeconds * 1000).rounded(.up)
        return ms <= 0 ? 0 : Int32(min(ms, Double(Int32.max)))
    }

    var timeval: Glibc.timeval {
        let (seconds, attoseconds) = components
        return Glibc.timeval(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
    }
}

/// Sleeps the calling thread (for the blocking APIs).
func sleepBlocking(_ duration: Duration) {
    var request = timespec(
        tv_sec: Int(duration.components.seconds), tv_nsec: Int(duration.components.attoseconds / 1_000_000_000))
    var remaining = timespec()
    while nanosleep(&request, &remaining) != 0 && Glibc.errno == EINTR {
        request = remaining
    }
}

/// Runs blocking work (a `recv`, a `waitExit`, a bulk transfer) on a thread of its own and awaits it,
/// so that tests never tie up the few threads of Swift's cooperative pool (two on a two-core machine:
/// two blocked tasks waiting on a third would deadlock).
public func offload<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, Error>) in
        let thread = Thread {
            continuation.resume(with: Result { try body() })
        }
        thread.name = "EctoTestSupport.offload"
        thread.start()
    }
}

/// Polls `condition` until it returns true; throws a `.timeout` error naming `description` and the
/// caller's location if it has not after `timeout`. The condition is evaluated at least once.
nonisolated(nonsending) public func waitUntil(
    timeout: Duration,
    poll: Duration = .milliseconds(20),
    _ description: @autoclosure () -> String = "condition",
    fileID: String = #fileID,
    line: Int = #line,
    _ condition: () async throws -> Bool
) async throws {
    let clock = ContinuousClock()
    let deadline = clock.now.advanced(by: timeout)
    while true {
        if try await condition() { return }
        if clock.now >= deadline {
            throw TestSupportError(
                .timeout, "\(fileID):\(line): timed out after \(timeout) waiting for \(description())")
        }
        try await Task.sleep(for: poll)
    }
}

/// The blocking twin of `waitUntil`, for code that is not async.
public func waitUntilBlocking(
    timeout: Duration,
    poll: Duration = .milliseconds(20),
    _ description: @autoclosure () -> String = "condition",
    fileID: String = #fileID,
    line: Int = #line,
    _ condition: () throws -> Bool
) throws {
    let clock = ContinuousClock()
    let deadline = clock.now.advanced(by: timeout)
    while true {
        if try condition() { return }
        if clock.now >= deadline {
            throw TestSupportError(
                .timeout, "\(fileID):\(line): timed out after \(timeout) waiting for \(description())")
        }
        sleepBlocking(poll)
    }
}

/// Process-wide resource limits that the load tests need.
public enum ResourceLimits {
    /// Raises the soft limit on open files to at least `minimum` (capped by the hard limit) and returns
    /// the new soft limit. Child processes spawned afterwards (sshd, the daemon) inherit it; sshd opens
    /// one socket per forwarded channel, so 1,000 concurrent connections need more than the usual 1024.
    @discardableResult
    public static func raiseOpenFileLimit(atLeast minimum: UInt64 = 65536) -> UInt64 {
        var limit = rlimit()
        let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
        guard getrlimit(resource, &limit) == 0 else { return 0 }
        if limit.rlim_cur < minimum {
            limit.rlim_cur = min(rlim_t(minimum), limit.rlim_max)
            _ = setrlimit(resource, &limit)
            _ = getrlimit(resource, &limit)
        }
        return UInt64(limit.rlim_cur)
    }
}

// MARK: - Small file helpers shared by the module

/// Reads a whole file with plain `read(2)` (works for /proc files, whose size is reported as 0).
func readFileBytes(_ path: String) -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var result: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n > 0 {
            result.append(contentsOf: buffer[0..<n])
        } else if n == 0 {
            return result
        } else if Glibc.errno != EINTR {
            return nil
        }
    }
}

func readFileString(_ path: String) -> String? {
    readFileBytes(path).map { String(decoding: $0, as: UTF8.self) }
}

func writeFile(_ path: String, _ contents: String, mode: mode_t = 0o644, append: Bool = false) throws {
    let flags = O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_TRUNC)
    let fd = open(path, flags, mode)
    guard fd >= 0 else { throw TestSupportError.system("open(\(path))") }
    defer { close(fd) }
    let bytes = Array(contents.utf8)
    var offset = 0
    while offset < bytes.count {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
        if n < 0 {
            if Glibc.errno == EINTR { continue }
            throw TestSupportError.system("write(\(path))")
        }
        offset += n
    }
    guard fchmod(fd, mode) == 0 else { throw TestSupportError.system("fchmod(\(path))") }
}

/// True if `path` is a regular file this process may execute.
func isExecutableFile(_ path: String) -> Bool {
    var info = stat()
    return access(path, X_OK) == 0 && stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG
}

/// The last `count` lines of `text`.
func tail(_ text: String, lines count: Int) -> String {
    text.split(separator: "\n", omittingEmptySubsequences: false).suffix(count).joined(separator: "\n")
}

/// The name of the user this process runs as.
func currentUserName() -> String {
    if let entry = getpwuid(geteuid()), let name = entry.pointee.pw_name {
        return String(cString: name)
    }
    return ProcessInfo.processInfo.environment["USER"] ?? "root"
}
