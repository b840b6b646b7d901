import Foundation
import Glibc

/// Every child this module started and has not reaped yet, killed by an `atexit` hook so that a
/// test run that ends with leaked objects leaves no sshd or daemon behind. (A crash of the test
/// process itself cannot be covered this way.)
enum LiveProcesses {
    private struct Entry {
        var group: Bool
        var tree: Bool
    }

    private static let entries = Locked<[pid_t: Entry]>([:])
    private static let hook: Void = {
        atexit { LiveProcesses.killAll() }
    }()

    static func register(_ pid: pid_t, group: Bool) {
        _ = hook
        entries.withLock { $0[pid] = Entry(group: group, tree: false) }
    }

    /// Also kill the process's descendants at exit (sshd's per-connection children leave its group).
    static func markTree(_ pid: pid_t) {
        entries.withLock { $0[pid]?.tree = true }
    }

    static func contains(_ pid: pid_t) -> Bool {
        entries.withLock { $0[pid] != nil }
    }

    static func unregister(_ pid: pid_t) {
        _ = entries.withLock { $0.removeValue(forKey: pid) }
    }

    static func killAll() {
        let all = entries.withLock { $0 }
        for (pid, entry) in all {
            if entry.tree {
                for child in ProcessTree.freeze(pid) { Glibc.kill(child, SIGKILL) }
            }
            Glibc.kill(entry.group ? -pid : pid, SIGKILL)
        }
        Reaping.reapAdoptedSSHD()
    }
}

/// Reads the process tree from /proc.
public enum ProcessTree {
    /// (parent pid, process group, state letter, command name) of `pid`, or nil if there is no such
    /// process.
    static func stat(_ pid: pid_t) -> (parent: pid_t, group: pid_t, state: Character, name: Substring)? {
        guard let text = readFileString("/proc/\(pid)/stat"),
            let open = text.firstIndex(of: "("),
            let close = text.lastIndex(of: ")")
        else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count >= 3, let state = fields[0].first, let parent = pid_t(fields[1]),
            let group = pid_t(fields[2])
        else { return nil }
        return (parent, group, state, text[text.index(after: open)..<close])
    }

    /// Every pid in /proc.
    static func allProcesses() -> [pid_t] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { pid_t($0) }
    }

    /// True if the process exists and is not a zombie.
    public static func isAlive(_ pid: pid_t) -> Bool {
        guard let info = stat(pid) else { return false }
        return info.state != "Z" && info.state != "X"
    }

    /// The command line of a process (arguments joined by spaces).
    public static func commandLine(_ pid: pid_t) -> String? {
        guard let bytes = readFileBytes("/proc/\(pid)/cmdline") else { return nil }
        return String(decoding: bytes.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self)
            .trimmingCharacters(in: .whitespaces)
    }

    /// The number of open file descriptors of `pid` (entries of /proc/PID/fd), or nil if it is gone.
    public static func openFileCount(_ pid: pid_t) -> Int? {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd"))?.count
    }

    /// What the open file descriptors of `pid` point at (/proc/PID/fd/N → "socket:[123]", a path…),
    /// by descriptor number.
    public static func openFiles(_ pid: pid_t) -> [Int32: String] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []
        var result: [Int32: String] = [:]
        for entry in entries {
            guard let fd = Int32(entry) else { continue }
            result[fd] = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(entry)")) ?? "?"
        }
        return result
    }

    /// The resident set size of `pid` in KiB (`VmRSS` of /proc/PID/status), or nil if it is gone.
    public static func residentKiB(_ pid: pid_t) -> Int? {
        guard let status = readFileString("/proc/\(pid)/status") else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            // "VmRSS:\t    1234 kB": tabs and spaces.
            return Int(line.dropFirst("VmRSS:".count).split(whereSeparator: { $0 == " " || $0 == "\t" }).first ?? "")
        }
        return nil
    }

    /// The descendants of `root` (children, grandchildren, ...), not `root` itself; zombies (ended,
    /// not yet reaped) only if asked for.
    public static func descendants(of root: pid_t, includingZombies: Bool = false) -> [pid_t] {
        var children: [pid_t: [pid_t]] = [:]
        for pid in allProcesses() {
            guard let info = stat(pid), includingZombies || info.state != "Z" else { continue }
            children[info.parent, default: []].append(pid)
        }
        var result: [pid_t] = []
        var queue = [root]
        while let next = queue.popLast() {
            for child in children[next] ?? [] {
                result.append(child)
                queue.append(child)
            }
        }
        return result
    }

    /// Stops `root` and all its descendants with SIGSTOP (so none can fork while we look) and returns
    /// the descendants, zombies included (so that whoever adopts them can reap them). Send the
    /// signal you want, then SIGCONT to the same pids and `root`.
    static func freeze(_ root: pid_t) -> [pid_t] {
        Glibc.kill(root, SIGSTOP)
        var frozen = Set<pid_t>()
        for _ in 0..<5 {
            let found = Set(descendants(of: root, includingZombies: true))
            let new = found.subtracting(frozen)
            if new.isEmpty { break }
            for pid in new { Glibc.kill(pid, SIGSTOP) }
            frozen.formUnion(new)
        }
        return Array(frozen)
    }
}

/// Making the test process a child subreaper, and reaping the sshd processes it adopts.
///
/// sshd processes are re-parented whenever their parent dies first: sessions when the listener is
/// stopped, and a session's pre-authentication child when the session ends before reaping it
/// (seen after a client drops during key exchange). Here PID 1 reaps orphans only now and then, so
/// they would linger as zombies, and a test could not tell "gone" from "not reaped yet". As a
/// subreaper (`PR_SET_CHILD_SUBREAPER`) the test process adopts them instead, and reaps every adopted
/// *sshd* zombie that is not a `Subprocess` of its own: during every server operation, and every
/// 100 ms from a background thread while any `SSHServer` exists. Other children are never reaped
/// here, so `Foundation.Process` and `Subprocess` keep their exit statuses.
enum Reaping {
    private static let servers = Locked<(count: Int, threadRunning: Bool)>((0, false))

    /// Called by every `SSHServer` init; starts the background reaper if it is not running.
    static func serverCreated() {
        becomeSubreaper()
        let startThread = servers.withLock { servers -> Bool in
            servers.count += 1
            defer { servers.threadRunning = true }
            return !servers.threadRunning
        }
        guard startThread else { return }
        let thread = Thread {
            while true {
                sleepBlocking(.milliseconds(100))
                reapAdoptedSSHD()
                let stop = servers.withLock { servers -> Bool in
                    if servers.count == 0 { servers.threadRunning = false }
                    return servers.count == 0
                }
                if stop { return }
            }
        }
        thread.name = "EctoTestSupport.reaper"
        thread.start()
    }

    /// Called by every `SSHServer` deinit; the reaper thread ends once none is left.
    static func serverDestroyed() {
        servers.withLock { $0.count -= 1 }
    }

    private static let subreaper: Void = {
        typealias Prctl = @convention(c) (Int32, UInt, UInt, UInt, UInt) -> Int32
        if let symbol = dlsym(nil, "prctl") {
            let prctl = unsafeBitCast(symbol, to: Prctl.self)
            _ = prctl(36 /* PR_SET_CHILD_SUBREAPER */, 1, 0, 0, 0)
        }
    }()

    static func becomeSubreaper() { _ = subreaper }

    /// After a `Subprocess` that led process group `group` was killed with its group: waits (up to
    /// `timeout`) for the other members to die and reaps those this process adopted (a shell's
    /// children, when the shell died with them).
    static func reapKilledGroup(_ group: pid_t, timeout: Duration = .milliseconds(500)) {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        let me = getpid()
        while true {
            var membersAlive = false
            for pid in ProcessTree.allProcesses() {
                guard let info = ProcessTree.stat(pid), info.group == group else { continue }
                if info.state != "Z" && info.state != "X" {
                    membersAlive = true
                } else if info.parent == me && !LiveProcesses.contains(pid) {
                    var status: Int32 = 0
                    _ = waitpid(pid, &status, WNOHANG)
                }
            }
            if !membersAlive || ContinuousClock.now >= deadline { return }
            sleepBlocking(.milliseconds(5))
        }
    }

    /// Reaps every zombie child of this process named "sshd" that no `Subprocess` owns.
    static func reapAdoptedSSHD() {
        let me = getpid()
        for pid in ProcessTree.allProcesses() {
            guard let info = ProcessTree.stat(pid), info.parent == me, info.state == "Z", info.name == "sshd",
                !LiveProcesses.contains(pid)
            else { continue }
            var status: Int32 = 0
            _ = waitpid(pid, &status, WNOHANG)
        }
    }

    /// Waits until none of `pids` exists any more, reaping those this process adopted. A zombie whose
    /// parent is another living process is still waited for: that parent reaps it, or dies first and
    /// hands it to us (a zombie left to PID 1 counts as gone: nothing can be done about it).
    /// Returns the pids still there after `timeout`.
    static func waitGone(_ pids: [pid_t], timeout: Duration) -> [pid_t] {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        let me = getpid()
        var remaining = pids
        while true {
            remaining = remaining.filter { pid in
                guard let info = ProcessTree.stat(pid) else { return false }
                guard info.state == "Z" || info.state == "X" else { return true }
                if info.parent == me {
                    var status: Int32 = 0
                    return waitpid(pid, &status, WNOHANG) != pid
                }
                return info.parent != 1
            }
            if remaining.isEmpty || ContinuousClock.now >= deadline { return remaining }
            sleepBlocking(.milliseconds(5))
        }
    }
}
