@testable import EctoDaemon
import Foundation
import Glibc
import Testing

/// A datagram socket standing in for systemd's notify socket (a real socket, not a mock: the
/// notifier's sendmsg reaches it through the kernel).
private final class NotifySocket {
    let fd: Int32
    let name: String

    /// `abstract`: a name in the abstract namespace, written `@name` in NOTIFY_SOCKET.
    init(abstract: Bool) throws {
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        let unique = "ecto-notify-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        name = abstract ? "@" + unique : "/tmp/" + unique
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(name.utf8)
        if abstract { bytes[0] = 0 } else { unlink(name) }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in for (i, b) in bytes.enumerated() { raw[i] = b } }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (abstract ? 0 : 1))
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard rc == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit {
        close(fd)
        if name.hasPrefix("/") { unlink(name) }
    }

    func receive() -> String? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        return n < 0 ? nil : String(decoding: buffer[0..<n], as: UTF8.self)
    }
}

@Suite("SystemdNotifier")
struct SystemdNotifierTests {
    @Test(
        "sends READY/STATUS/WATCHDOG/STOPPING datagrams to a path or an abstract (@name) socket",
        arguments: [false, true])
    func sendsToSocket(abstract: Bool) throws {
        let socket = try NotifySocket(abstract: abstract)
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": socket.name])
        #expect(notifier.isEnabled)
        notifier.ready(status: "1/2 tunnels up\n(second line folded)")
        #expect(socket.receive() == "READY=1\nSTATUS=1/2 tunnels up (second line folded)")
        notifier.watchdogPing()
        #expect(socket.receive() == "WATCHDOG=1")
        notifier.reloading()
        let reloading = socket.receive() ?? ""
        #expect(reloading.hasPrefix("RELOADING=1\nMONOTONIC_USEC="), "\(reloading)")
        notifier.stopping()
        #expect(socket.receive() == "STOPPING=1")
    }

    @Test("without NOTIFY_SOCKET (or with a relative one) nothing is sent and nothing fails")
    func disabled() {
        for environment in [[:], ["NOTIFY_SOCKET": ""], ["NOTIFY_SOCKET": "relative/path"]] {
            let notifier = SystemdNotifier(environment: environment)
            #expect(!notifier.isEnabled)
            #expect(!notifier.notify("READY=1"))
        }
    }

    @Test("WATCHDOG_USEC applies only to the pid named by WATCHDOG_PID (when set)")
    func watchdogInterval() {
        let me = getpid()
        #expect(SystemdNotifier.watchdogInterval(environment: ["WATCHDOG_USEC": "2000000"], pid: me) == .seconds(2))
        #expect(
            SystemdNotifier.watchdogInterval(
                environment: ["WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "\(me)"], pid: me) == .seconds(2))
        #expect(
            SystemdNotifier.watchdogInterval(
                environment: ["WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "\(me + 1)"], pid: me) == nil)
        #expect(SystemdNotifier.watchdogInterval(environment: ["WATCHDOG_USEC": "0"], pid: me) == nil)
        #expect(SystemdNotifier.watchdogInterval(environment: ["WATCHDOG_USEC": "x"], pid: me) == nil)
        #expect(SystemdNotifier.watchdogInterval(environment: [:], pid: me) == nil)
    }
}
