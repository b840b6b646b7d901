import EctoPlatform
#if canImport(Glibc)
import Glibc
#endif

/// Runs a program to completion with stdin on /dev/null and its stdout and stderr captured
/// together, bounded by a timeout (what `systemctl --user` calls need). posix_spawn and a pipe
/// read with poll, in place of Foundation's `Process` and `Pipe`.
enum ChildProcess {
    struct Outcome {
        /// The exit status, or the signal number if a signal ended it (as `Process` reported it).
        var status: Int32
        var output: String
        /// The timeout passed: the child got SIGTERM and was reaped; `status` is meaningless.
        var timedOut: Bool
    }

    /// The child could not be started; `code` is the errno value.
    struct SpawnFailure: Error, CustomStringConvertible {
        var code: Int32
        var description: String { String(cString: strerror(code)) }
    }

    /// How long the output may still flow after the child exited (a grandchild holding the pipe).
    static let drainAfterExit: Duration = .seconds(5)

    static func run(_ executable: String, _ arguments: [String], timeout: Duration) throws(SpawnFailure) -> Outcome {
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else { throw SpawnFailure(code: errno) }
        let (readEnd, writeEnd) = (ends[0], ends[1])
        // Close-on-exec (pipe2 is not in Swift's Glibc module): only the child's dup2 copies survive.
        _ = fcntl(readEnd, F_SETFD, FD_CLOEXEC)
        _ = fcntl(writeEnd, F_SETFD, FD_CLOEXEC)
        defer { Syscall.close(readEnd) }

        let pid: pid_t
        do {
            pid = try Spawn.start(executable, arguments, stdout: .descriptor(writeEnd), stderr: .stdout)
        } catch {
            Syscall.close(writeEnd)
            throw SpawnFailure(code: error.code)
        }
        Syscall.close(writeEnd)

        var output: [UInt8] = []
        var exitStatus: Int32?
        let deadline = ContinuousClock.now.advanced(by: timeout)
        var drainDeadline = deadline
        var open = true
        while open {
            let now = ContinuousClock.now
            if now >= drainDeadline { break }
            // Wake at least every 10 ms to notice the exit even while the pipe stays open.
            var fd = pollfd(fd: readEnd, events: Int16(POLLIN), revents: 0)
            let wait = exitStatus == nil ? 10 : milliseconds(now.duration(to: drainDeadline))
            guard let ready = try? Syscall.blocking("poll", { poll(&fd, 1, wait) }) else { break }
            if ready > 0 { open = readAvailable(readEnd, into: &output) }
            if exitStatus == nil, let status = reap(pid, blocking: false) {
                exitStatus = status
                drainDeadline = min(deadline, ContinuousClock.now.advanced(by: drainAfterExit))
            }
        }
        if let exitStatus {
            return Outcome(status: exitStatus, output: String(decoding: output, as: UTF8.self), timedOut: false)
        }
        if !open, let status = reap(pid, blocking: false) ?? reapBefore(pid, deadline) {
            return Outcome(status: status, output: String(decoding: output, as: UTF8.self), timedOut: false)
        }
        kill(pid, SIGTERM)
        _ = reap(pid, blocking: true)
        return Outcome(status: -1, output: String(decoding: output, as: UTF8.self), timedOut: true)
    }

    /// Reads what the pipe holds; false at end of file (or a read error).
    private static func readAvailable(_ fd: Int32, into output: inout [UInt8]) -> Bool {
        var chunk = [UInt8](repeating: 0, count: 4096)
        guard
            let n = try? Syscall.blocking(
                "read", { chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) } }), n > 0
        else { return false }
        output += chunk[0..<n]
        return true
    }

    /// Waits for the child's exit until `deadline`, checking every 10 ms.
    private static func reapBefore(_ pid: pid_t, _ deadline: ContinuousClock.Instant) -> Int32? {
        while ContinuousClock.now < deadline {
            if let status = reap(pid, blocking: false) { return status }
            usleep(10_000)
        }
        return nil
    }

    /// The child's status once it ended: its exit code, or the number of the signal that ended it.
    private static func reap(_ pid: pid_t, blocking: Bool) -> Int32? {
        var status: Int32 = 0
        guard (try? Syscall.blocking("waitpid", { waitpid(pid, &status, blocking ? 0 : WNOHANG) })) == pid else {
            return nil
        }
        let signal = status & 0x7F
        return signal == 0 ? (status >> 8) & 0xFF : signal
    }

    private static func milliseconds(_ duration: Duration) -> Int32 {
        let (seconds, attoseconds) = duration.components
        return Int32(clamping: max(0, seconds * 1000 + attoseconds / 1_000_000_000_000_000 + 1))
    }
}
