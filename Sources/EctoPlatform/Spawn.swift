#if canImport(Glibc)
import CEctoLinux
import Glibc

/// Starting and ending child processes (posix_spawn), for every production module that runs a
/// program: the child gets exactly the three descriptors it is given (every other one is closed in
/// the child, close-on-exec or not: no control socket, listener or SSH socket leaks into it), no
/// blocked signals, and the default action for SIGPIPE, SIGTERM, SIGINT, SIGHUP.
public enum Spawn {
    /// How a child ended.
    public enum Exit: Sendable, Equatable, CustomStringConvertible {
        case exited(Int32)
        case signaled(Int32)

        public var description: String {
            switch self {
            case .exited(let code): return "exited with status \(code)"
            case .signaled(let signal): return "killed by signal \(signal)"
            }
        }
    }

    /// The program could not be started (`code`: errno).
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public var program: String = ""
        public var code: Int32
        public var description: String {
            program.isEmpty
                ? String(cString: strerror(code)) : "cannot run \(program): \(String(cString: strerror(code)))"
        }
    }

    /// Where one of the child's standard descriptors comes from.
    public enum Source: Sendable {
        /// `/dev/null`.
        case null
        /// A file opened for appending (created with `mode` if missing).
        case append(path: String, mode: mode_t)
        /// A copy of one of our descriptors (it should be close-on-exec here).
        case descriptor(Int32)
        /// The same as the child's stdout (for stderr).
        case stdout
    }

    /// Starts `arguments[0]` (looked up in PATH when it has no `/`) with stdin, stdout and stderr
    /// on the given descriptors (-1: /dev/null), in the caller's environment. With
    /// `newProcessGroup` the child leads a process group of its own, so `terminate` ends the
    /// programs it started too (a shell pipeline).
    public static func start(
        _ arguments: [String], stdin: Int32, stdout: Int32, stderr: Int32, newProcessGroup: Bool
    ) throws(Failure) -> pid_t {
        precondition(!arguments.isEmpty, "no program to run")
        let argv = arguments.map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: Int32 = 0
        let rc = argv.withUnsafeBufferPointer { args in
            ecto_spawn(args.baseAddress, environ, stdin, stdout, stderr, newProcessGroup ? 1 : 0, &pid)
        }
        guard rc == 0 else { throw Failure(program: arguments[0], code: rc) }
        return pid
    }

    /// The child's exit once it ended (and it is reaped), nil while it runs (`blocking`: wait).
    public static func reap(_ pid: pid_t, blocking: Bool) -> Exit? {
        var status: Int32 = 0
        while true {
            let result = waitpid(pid, &status, blocking ? 0 : WNOHANG)
            if result == pid { break }
            if result < 0 && errno == EINTR { continue }
            return nil
        }
        let signal = status & 0x7F
        return signal == 0 ? .exited((status >> 8) & 0xFF) : .signaled(signal)
    }

    /// Ends a child started with `newProcessGroup` and everything in its group (SIGKILL: it is
    /// ours and holds nothing that needs a clean stop), and reaps it. Returns how it ended.
    @discardableResult
    public static func terminate(_ pid: pid_t) -> Exit? {
        // Until it is reaped the child (a zombie at worst) keeps its pid and group id: no other
        // process can have them, so the signal reaches only what it started. A child that already
        // ended keeps its own exit status.
        kill(-pid, SIGKILL)
        kill(pid, SIGKILL)
        return reap(pid, blocking: true)
    }

    /// The second form, for programs whose output goes to files (the background daemon of
    /// `connect`, `systemctl --user` for the installer), relying on close-on-exec for our other
    /// descriptors. Starts `executable` with `arguments` (argv[0] is `executable`) and our environment.
    /// `newSession`: the child leads a session of its own (setsid), so it is not in our
    /// terminal's session and a hang-up there does not reach it.
    public static func start(
        _ executable: String, _ arguments: [String], stdin: Source = .null, stdout: Source, stderr: Source,
        newSession: Bool = false
    ) throws(Failure) -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for (target, source) in [(Int32(0), stdin), (1, stdout), (2, stderr)] {
            switch source {
            case .null:
                posix_spawn_file_actions_addopen(&actions, target, "/dev/null", target == 0 ? O_RDONLY : O_WRONLY, 0)
            case .append(let path, let mode):
                posix_spawn_file_actions_addopen(&actions, target, path, O_WRONLY | O_CREAT | O_APPEND, mode)
            case .descriptor(let fd):
                posix_spawn_file_actions_adddup2(&actions, fd, target)
            case .stdout:
                posix_spawn_file_actions_adddup2(&actions, 1, target)
            }
        }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        var defaultSignals = sigset_t()
        sigemptyset(&defaultSignals)
        sigaddset(&defaultSignals, SIGPIPE)
        posix_spawnattr_setsigdefault(&attributes, &defaultSignals)
        var flags = Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)
        if newSession { flags |= ECTO_POSIX_SPAWN_SETSID }
        posix_spawnattr_setflags(&attributes, flags)
        var pid: pid_t = 0
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        let rc = posix_spawn(&pid, executable, &actions, &attributes, argv, environ)
        guard rc == 0 else { throw Failure(code: rc) }
        return pid
    }
}
#endif
