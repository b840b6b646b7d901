#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import EctoPlatform
#if canImport(Glibc)
import Glibc
#endif

/// The daemon's side of systemd's notify protocol (`sd_notify(3)`), without libsystemd: one
/// datagram of `KEY=VALUE` lines per message, sent with `sendmsg` to the `AF_UNIX` socket named by
/// `$NOTIFY_SOCKET` (a path, or an abstract name written with a leading `@`).
///
/// Without `NOTIFY_SOCKET` (not started by systemd, or `Type=` is not `notify`) every call does
/// nothing. Failures to send are reported to the caller's `onError` once, then ignored: systemd
/// being gone must never stop the tunnels.
///
/// `Sendable`: the socket address and descriptor are fixed at init; `sendmsg` on a datagram socket
/// is atomic per message, so concurrent senders (watchdog thread, main thread, driver callbacks)
/// never interleave.
public final class SystemdNotifier: Sendable {
    /// The parsed `$NOTIFY_SOCKET`, or nil when notifications are off.
    public let socketPath: String?
    /// The watchdog interval systemd expects pings within (`WATCHDOG_USEC`, honoured only when
    /// `WATCHDOG_PID` is unset or names this process), or nil when no watchdog is configured.
    public let watchdogInterval: Duration?
    /// The datagram socket; nil when notifications are off or the socket could not be made.
    private let socket: Descriptor?
    private let address: sockaddr_un?
    private let addressLength: socklen_t

    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` from `environment`.
    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        watchdogInterval = Self.watchdogInterval(environment: environment, pid: getpid())
        guard let path = environment["NOTIFY_SOCKET"], !path.isEmpty,
            path.hasPrefix("/") || path.hasPrefix("@"),
            path.utf8.count < MemoryLayout.size(ofValue: sockaddr_un().sun_path)
        else {
            socketPath = nil
            socket = nil
            address = nil
            addressLength = 0
            return
        }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(path.utf8)
        if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }  // abstract namespace: leading NUL
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (index, byte) in bytes.enumerated() { raw[index] = byte }
        }
        // Abstract names are not NUL-terminated: the length says where they end.
        let length = MemoryLayout<sa_family_t>.size + bytes.count + (bytes[0] == 0 ? 0 : 1)
        socketPath = path
        address = addr
        addressLength = socklen_t(length)
        socket = Descriptor(
            rawValue: Glibc.socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0))
    }

    deinit {
        socket?.close()
    }

    /// True when messages go somewhere.
    public var isEnabled: Bool { socketPath != nil && socket != nil }

    /// `WATCHDOG_USEC` as a duration if it applies to `pid` (see `sd_watchdog_enabled(3)`).
    static func watchdogInterval(environment: [String: String], pid: pid_t) -> Duration? {
        guard let text = environment["WATCHDOG_USEC"], let usec = UInt64(text), usec > 0 else { return nil }
        if let owner = environment["WATCHDOG_PID"], !owner.isEmpty {
            guard let ownerPID = pid_t(owner), ownerPID == pid else { return nil }
        }
        return .microseconds(Int64(clamping: usec))
    }

    /// Sends one message (`READY=1`, `STATUS=…`, several lines joined by "\n"). Returns false if
    /// it could not be sent (or notifications are off).
    @discardableResult
    public func notify(_ message: String) -> Bool {
        guard isEnabled, let fd = socket?.rawValue, var addr = address else { return false }
        var bytes = Array(message.utf8)
        let length = addressLength
        let sent = withUnsafeMutablePointer(to: &addr) { addrPointer in
            bytes.withUnsafeMutableBytes { buffer -> Int in
                var iov = iovec(iov_base: buffer.baseAddress, iov_len: buffer.count)
                return withUnsafeMutablePointer(to: &iov) { iovPointer in
                    var header = msghdr()
                    header.msg_name = UnsafeMutableRawPointer(addrPointer)
                    header.msg_namelen = length
                    header.msg_iov = iovPointer
                    header.msg_iovlen = 1
                    return (try? Syscall.blocking("sendmsg") { sendmsg(fd, &header, Int32(MSG_NOSIGNAL)) }) ?? -1
                }
            }
        }
        return sent == bytes.count
    }

    /// `READY=1` with a status line.
    public func ready(status: String) { notify("READY=1\nSTATUS=\(Self.oneLine(status))") }
    /// `STATUS=…` (one line).
    public func status(_ text: String) { notify("STATUS=\(Self.oneLine(text))") }
    /// `RELOADING=1` (plus `MONOTONIC_USEC`, which newer managers want with it).
    public func reloading() { notify("RELOADING=1\nMONOTONIC_USEC=\(Self.monotonicMicroseconds())") }
    /// `STOPPING=1`.
    public func stopping() { notify("STOPPING=1") }
    /// `WATCHDOG=1`: "still making progress".
    public func watchdogPing() { notify("WATCHDOG=1") }

    static func oneLine(_ text: String) -> String {
        text.replacing("\n", with: " ")
    }

    static func monotonicMicroseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1000
    }
}
