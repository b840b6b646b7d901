import CEctoLinux
#if canImport(Glibc)
import Glibc
#endif

/// Starting a child process: the one place production code calls `posix_spawn` (the background
/// daemon of `connect`, `systemctl --user` for the installer). The child starts with no blocked
/// signals and SIGPIPE at its default, whatever this process set (the daemon blocks SIGTERM,
/// SIGINT and SIGHUP in every thread, and a child would inherit that mask).
public enum Spawn {
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

    /// The child could not be started; `code` is the errno value.
    public struct Failure: Error, CustomStringConvertible, Sendable {
        public var code: Int32
        public var description: String { String(cString: strerror(code)) }
    }

    /// Starts `executable` with `arguments` (argv[0] is `executable`) and our environment.
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
