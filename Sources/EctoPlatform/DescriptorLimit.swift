import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The process's file descriptor limit (RLIMIT_NOFILE), and the headroom kept below it.
///
/// Accepting a local client costs a descriptor, and any local user can connect to a tunnel's port.
/// So clients are admitted only while `reserve` descriptors stay free: the control socket, SSH
/// reconnects, key files, known_hosts and the agent socket keep working however many clients
/// arrive. Checking is free: `accept` returns the lowest unused descriptor number, so a client
/// socket numbered `n` means 0..<n are all in use, and `n >= limit - reserve` means fewer than
/// `reserve` are left.
public enum DescriptorLimit {
    private static let cachedSoft = Atomic<Int>(0)

    /// Raises the soft limit to the hard limit (what systemd's `LimitNOFILE=` or the login
    /// allows), as a daemon that may hold many sockets should. Returns the limits before and after.
    @discardableResult
    public static func raiseSoftLimit() -> (before: Int, after: Int) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return (0, refresh()) }
        let before = Int(clamping: limit.rlim_cur)
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised)
        }
        return (before, refresh())
    }

    /// Reads the soft limit again (another process may have changed it with prlimit).
    @discardableResult
    public static func refresh() -> Int {
        var limit = rlimit()
        let soft = getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 ? Int(clamping: limit.rlim_cur) : 1024
        cachedSoft.store(soft, ordering: .relaxed)
        return soft
    }

    /// The soft limit as last read.
    public static var soft: Int {
        let value = cachedSoft.load(ordering: .relaxed)
        return value > 0 ? value : refresh()
    }

    /// Descriptors kept free below `soft`: 1/8 of the limit, at least 16, at most 128.
    public static func reserve(for limit: Int) -> Int { min(128, max(16, limit / 8)) }

    /// True when a descriptor numbered `fd` leaves fewer than the reserve free.
    /// On the refusing side the limit is read again first (prlimit may have raised it), so only
    /// refusals cost a system call.
    public static func isInReserve(_ fd: Int32) -> Bool {
        let limit = soft
        guard Int(fd) >= limit - reserve(for: limit) else { return false }
        let current = refresh()
        return Int(fd) >= current - reserve(for: current)
    }
}
