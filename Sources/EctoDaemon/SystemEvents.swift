import CEctoLinux
import Dispatch
import EctoPlatform
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Watches for the two things after which an SSH session may be dead without knowing it: the
/// network changing (rtnetlink link/address/route events) and the machine resuming from suspend
/// (CLOCK_BOOTTIME jumps ahead of CLOCK_MONOTONIC; the wake-up comes from a cancel-on-set
/// realtime timerfd, which the kernel cancels on every resume). Reports each, debounced, through
/// `onChange`. One thread, asleep in poll until the kernel has news.
final class SystemEvents: Sendable {
    // The fds are created in init and closed only after the thread ended (`stop` joins it).
    /// The rtnetlink socket; nil when network change monitoring is unavailable.
    private let routeFD: Descriptor?
    /// The cancel-on-set realtime timerfd; nil when resume detection is unavailable.
    private let clockFD: Descriptor?
    /// The eventfd that wakes the thread to stop; nil if it could not be made (then `stop`
    /// cannot wake it and waits for the next event).
    private let wakeFD: Descriptor?
    private let onChange: @Sendable (String) -> Void
    private let logger: Logger
    private let stopRequested = Mutex(false)
    private let finished = DispatchSemaphore(value: 0)
    /// Network events within this window are reported once.
    let debounce: Duration

    init(logger: Logger, debounce: Duration = .milliseconds(300), onChange: @escaping @Sendable (String) -> Void) {
        self.logger = logger
        self.onChange = onChange
        self.debounce = debounce
        routeFD = Descriptor(rawValue: ecto_route_monitor_open())
        if routeFD == nil {
            logger.warning("network change monitoring unavailable: \(String(cString: strerror(errno)))")
        }
        clockFD = Descriptor(rawValue: ecto_clock_change_timer_open())
        if clockFD == nil { logger.warning("resume detection unavailable: \(String(cString: strerror(errno)))") }
        wakeFD = Descriptor(rawValue: ecto_eventfd(0, ECTO_EFD_NONBLOCK | ECTO_EFD_CLOEXEC))
    }

    func start() {
        startThread(name: "system events") { [self] in
            run()
            finished.signal()
        }
    }

    func stop() {
        stopRequested.withLock { $0 = true }
        var one: UInt64 = 1
        if let wakeFD { _ = write(wakeFD.rawValue, &one, 8) }
        finished.wait()
        for fd in [routeFD, clockFD, wakeFD] { fd?.close() }
    }

    private static func nanos(_ clock: clockid_t) -> Int64 {
        var ts = timespec()
        clock_gettime(clock, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }

    /// CLOCK_BOOTTIME − CLOCK_MONOTONIC: grows by exactly the time spent suspended.
    private static func suspendedNanos() -> Int64 { nanos(CLOCK_BOOTTIME) - nanos(CLOCK_MONOTONIC) }

    private func run() {
        var lastSuspended = Self.suspendedNanos()
        var pendingSince: ContinuousClock.Instant? = nil
        var pendingCount = 0
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 8)
        defer { buffer.deallocate() }
        while !stopRequested.withLock({ $0 }) {
            var fds = [
                // A negative fd is poll's "ignore this entry": what is unavailable is not watched.
                pollfd(fd: wakeFD?.rawValue ?? -1, events: Int16(POLLIN), revents: 0),
                pollfd(fd: routeFD?.rawValue ?? -1, events: Int16(POLLIN), revents: 0),
                pollfd(fd: clockFD?.rawValue ?? -1, events: Int16(POLLIN), revents: 0),
            ]
            var timeout: Int32 = -1
            if let since = pendingSince {
                let left = ContinuousClock.now.duration(to: since.advanced(by: debounce))
                timeout = max(
                    0, Int32(left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000) + 1)
            }
            guard
                (try? Syscall.blocking(
                    "poll", { fds.withUnsafeMutableBufferPointer { poll($0.baseAddress, nfds_t($0.count), timeout) } }))
                    != nil
            else { break }
            if fds[1].revents != 0, let routeFD {
                while true {
                    let read = try? Syscall.nonBlocking("recv") {
                        recv(routeFD.rawValue, buffer.baseAddress, buffer.count, Int32(MSG_DONTWAIT))
                    }
                    guard case .done(let n)? = read, n > 0 else { break }
                    let changes = Int(ecto_route_monitor_count_changes(buffer.baseAddress, n))
                    if changes > 0 {
                        pendingCount += changes
                        if pendingSince == nil { pendingSince = .now }
                    }
                }
            }
            if fds[2].revents != 0, let clockFD {
                var expirations: UInt64 = 0
                _ = read(clockFD.rawValue, &expirations, 8)  // ECANCELED: the realtime clock was set
                _ = ecto_clock_change_timer_rearm(clockFD.rawValue)
                let suspended = Self.suspendedNanos()
                let slept = suspended - lastSuspended
                lastSuspended = suspended
                if slept > 1_000_000_000 {
                    onChange("resumed after \(fixed(Double(slept) / 1e9, decimals: 0)) s of suspend")
                } else {
                    logger.debug("system clock changed (not a resume)")
                }
            }
            if let since = pendingSince, ContinuousClock.now >= since.advanced(by: debounce) {
                onChange("network changed (\(pendingCount) link/address/route event\(pendingCount == 1 ? "" : "s"))")
                pendingSince = nil
                pendingCount = 0
            }
        }
    }
}
