import Foundation
import Glibc

/// A child process started with `posix_spawn`: stdin from /dev/null (or a file), stdout and stderr
/// into files that can be read while it runs. Killed with SIGKILL (and reaped) on deinit if still
/// running, and at the latest when the test process exits normally.
///
/// `@unchecked Sendable`: every field is immutable except the reaped status, which lives in a
/// `Locked`; signals are sent under that lock, so a pid is never signalled after it was reaped.
public final class Subprocess: @unchecked Sendable {
    /// How a process ended.
    public enum Termination: Sendable, Equatable, CustomStringConvertible {
        case exited(Int32)
        case signaled(Int32)

        /// The shell's convention: the exit code, or 128 + the signal number.
        public var code: Int32 {
            switch self {
            case .exited(let code): return code
            case .signaled(let signal): return 128 + signal
            }
        }

        public var description: String {
            switch self {
            case .exited(let code): return "exit status \(code)"
            case .signaled(let signal): return "killed by signal \(signal)"
            }
        }
    }

    public let pid: pid_t
    public let executablePath: String
    public let arguments: [String]
    public let stdoutPath: String
    public let stderrPath: String
    /// True when the child leads a process group of its own (`signal` then reaches the whole group).
    public let ownsProcessGroup: Bool

    private let status = Locked<Termination?>(nil)
    private let ownedOutputDirectory: TestDirectory?

    /// Starts `executable` (an absolute path, or a name looked up in PATH, /usr/sbin and /sbin).
    ///
    /// - Parameters:
    ///   - environment: the child's whole environment; defaults to this process's environment.
    ///   - extraEnvironment: entries added to (or replacing those in) `environment`.
    ///   - workingDirectory: the child's current directory; defaults to ours.
    ///   - stdoutPath, stderrPath: files for the output (created, truncated unless `appendOutput`);
    ///     default: files in a private temporary directory removed on deinit. Both may be the same.
    ///   - stdinPath: a file for stdin; default /dev/null.
    ///   - newProcessGroup: put the child in a process group of its own, so that `signal`,
    ///     `terminate` and deinit reach the processes it forks too (e.g. a shell script's children).
    public init(
        _ executable: String,
        _ arguments: [String] = [],
        environment: [String: String] = ProcessInfo.processInfo.environment,
        extraEnvironment: [String: String] = [:],
        workingDirectory: String? = nil,
        stdoutPath: String? = nil,
        stderrPath: String? = nil,
        appendOutput: Bool = false,
        stdinPath: String? = nil,
        newProcessGroup: Bool = false
    ) throws {
        let path = try Subprocess.resolve(executable)
        var outputDirectory: TestDirectory? = nil
        if stdoutPath == nil || stderrPath == nil {
            outputDirectory = try TestDirectory(prefix: "ecto-proc")
        }
        let out = stdoutPath ?? outputDirectory!.file("stdout")
        let err = stderrPath ?? outputDirectory!.file("stderr")

        var fileActions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&fileActions)
        defer { posix_spawn_file_actions_destroy(&fileActions) }
        let outFlags = O_WRONLY | O_CREAT | (appendOutput ? O_APPEND : O_TRUNC)
        posix_spawn_file_actions_addopen(&fileActions, 0, stdinPath ?? "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&fileActions, 1, out, outFlags, 0o644)
        if err == out {
            posix_spawn_file_actions_adddup2(&fileActions, 1, 2)
        } else {
            posix_spawn_file_actions_addopen(&fileActions, 2, err, outFlags, 0o644)
        }
        // Do not leak the test process's descriptors (listening sockets above all) into the child.
        if let closeFrom = SpawnExtensions.addCloseFrom {
            _ = closeFrom(&fileActions, 3)
        }
        if let directory = workingDirectory {
            guard let addChdir = SpawnExtensions.addChdir else {
                throw TestSupportError(.notFound, "posix_spawn_file_actions_addchdir_np is not available")
            }
            _ = addChdir(&fileActions, directory)
        }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var emptyMask = sigset_t()
        sigemptyset(&emptyMask)
        var allSignals = sigset_t()
        sigfillset(&allSignals)
        posix_spawnattr_setsigmask(&attributes, &emptyMask)
        // Ignored signals (SIGPIPE in a Swift process) stay ignored across exec unless reset.
        posix_spawnattr_setsigdefault(&attributes, &allSignals)
        var flags = Int32(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)
        if newProcessGroup {
            flags |= Int32(POSIX_SPAWN_SETPGROUP)
            posix_spawnattr_setpgroup(&attributes, 0)
        }
        posix_spawnattr_setflags(&attributes, Int16(flags))

        var env = environment
        for (key, value) in extraEnvironment { env[key] = value }
        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }

        var child: pid_t = 0
        let rc = posix_spawn(&child, path, &fileActions, &attributes, argv, envp)
        guard rc == 0 else {
            outputDirectory?.cleanup()
            throw TestSupportError.system("posix_spawn(\(path))", rc)
        }
        pid = child
        executablePath = path
        self.arguments = arguments
        self.stdoutPath = out
        self.stderrPath = err
        ownsProcessGroup = newProcessGroup
        ownedOutputDirectory = outputDirectory
        LiveProcesses.register(child, group: newProcessGroup)
    }

    deinit {
        kill()
        ownedOutputDirectory?.cleanup()
    }

    /// What the process wrote to stdout so far.
    public func stdout() -> String { readFileString(stdoutPath) ?? "" }
    /// What the process wrote to stderr so far.
    public func stderr() -> String { readFileString(stderrPath) ?? "" }

    /// True until the process has exited (reaps it if it has).
    public var isRunning: Bool { reap(blocking: false) == nil }

    /// How it ended, if it has.
    public var termination: Termination? { reap(blocking: false) }

    /// Sends `signal` to the process (to its whole group if it leads one). No-op once it was reaped.
    public func signal(_ signal: Int32) {
        sendSignal(signal)
    }

    /// Waits up to `timeout` for the process to end; returns `Termination.code` (exit status, or
    /// 128 + signal) or nil if it is still running.
    public func waitExit(timeout: Duration) -> Int32? {
        waitTermination(timeout: timeout)?.code
    }

    /// The async twin of `waitExit(timeout:)`; sleeps between checks instead of blocking a thread.
    public func waitExit(timeout: Duration) async -> Int32? {
        await waitTermination(timeout: timeout)?.code
    }

    /// Waits up to `timeout` for the process to end.
    public func waitTermination(timeout: Duration) -> Termination? {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        var pause = Duration.milliseconds(1)
        while true {
            if let done = reap(blocking: false) { return done }
            if ContinuousClock.now >= deadline { return nil }
            sleepBlocking(pause)
            pause = min(pause * 2, .milliseconds(20))
        }
    }

    /// The async twin of `waitTermination(timeout:)`.
    public func waitTermination(timeout: Duration) async -> Termination? {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        var pause = Duration.milliseconds(1)
        while true {
            if let done = reap(blocking: false) { return done }
            if ContinuousClock.now >= deadline { return nil }
            try? await Task.sleep(for: pause)
            pause = min(pause * 2, .milliseconds(20))
        }
    }

    /// SIGTERM, then SIGKILL if it is still running after `grace`; returns how it ended. With
    /// `newProcessGroup`, the whole group gets the signals (and the members it leaves are reaped).
    @discardableResult
    public func terminate(grace: Duration = .seconds(2)) -> Termination {
        if let done = reap(blocking: false) { return done }
        sendSignal(SIGTERM)
        if let done = waitTermination(timeout: grace) {
            if ownsProcessGroup { Reaping.reapKilledGroup(pid) }
            return done
        }
        return kill()
    }

    /// SIGKILL (to the group with `newProcessGroup`) and reap.
    @discardableResult
    public func kill() -> Termination {
        if let done = reap(blocking: false) { return done }
        sendSignal(SIGKILL)
        let done = reap(blocking: true)!
        if ownsProcessGroup { Reaping.reapKilledGroup(pid) }
        return done
    }

    private func sendSignal(_ signal: Int32) {
        status.withLock { status in
            guard status == nil else { return }
            _ = Glibc.kill(ownsProcessGroup ? -pid : pid, signal)
        }
    }

    /// Reaps the child if it has ended; with `blocking`, waits for it. Holding the lock makes
    /// "reaped" and "signalled" mutually exclusive.
    private func reap(blocking: Bool) -> Termination? {
        status.withLock { status in
            if let done = status { return done }
            var raw: Int32 = 0
            while true {
                let result = waitpid(pid, &raw, blocking ? 0 : WNOHANG)
                if result == pid { break }
                if result == 0 { return nil }
                if Glibc.errno == EINTR { continue }
                // ECHILD: someone else reaped it; treat it as gone.
                status = .exited(-1)
                LiveProcesses.unregister(pid)
                return status
            }
            let low = raw & 0x7f
            status = low == 0 ? .exited((raw >> 8) & 0xff) : .signaled(low)
            LiveProcesses.unregister(pid)
            return status
        }
    }

    /// Finds an executable: absolute/relative paths as given, names in PATH then /usr/sbin and /sbin.
    public static func resolve(_ executable: String) throws -> String {
        if executable.contains("/") {
            guard access(executable, X_OK) == 0 else {
                throw TestSupportError(.notFound, "\(executable) is not an executable file")
            }
            return executable
        }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        let directories = path.split(separator: ":").map(String.init) + ["/usr/local/sbin", "/usr/sbin", "/sbin"]
        for directory in directories where !directory.isEmpty {
            let candidate = directory + "/" + executable
            if isExecutableFile(candidate) { return candidate }
        }
        throw TestSupportError(.notFound, "\(executable) not found in PATH, /usr/sbin or /sbin")
    }
}

/// The result of `Subprocess.run`.
public struct CommandResult: Sendable {
    public var command: [String]
    public var termination: Subprocess.Termination
    public var stdout: String
    public var stderr: String

    public var status: Int32 { termination.code }

    /// Throws `.commandFailed` with the command and its stderr unless it exited with status 0.
    @discardableResult
    public func check() throws -> CommandResult {
        guard termination == .exited(0) else {
            throw TestSupportError(
                .commandFailed(status: status),
                "\(command.joined(separator: " ")) failed (\(termination)): \(stderr)\(stdout)")
        }
        return self
    }
}

extension Subprocess {
    /// Runs a command to completion (killing it after `timeout`) and returns its output.
    /// Output goes through files, so large outputs cannot deadlock a pipe.
    public static func run(
        _ executable: String,
        _ arguments: [String] = [],
        environment: [String: String] = ProcessInfo.processInfo.environment,
        extraEnvironment: [String: String] = [:],
        workingDirectory: String? = nil,
        stdin: String? = nil,
        timeout: Duration = .seconds(60)
    ) throws -> CommandResult {
        var inputDirectory: TestDirectory? = nil
        defer { inputDirectory?.cleanup() }
        var stdinPath: String? = nil
        if let stdin {
            let directory = try TestDirectory(prefix: "ecto-stdin")
            inputDirectory = directory
            stdinPath = try directory.write("stdin", stdin)
        }
        let process = try Subprocess(
            executable, arguments, environment: environment, extraEnvironment: extraEnvironment,
            workingDirectory: workingDirectory, stdinPath: stdinPath)
        let termination: Termination
        if let done = process.waitTermination(timeout: timeout) {
            termination = done
        } else {
            process.kill()
            throw TestSupportError(
                .timeout, "\(executable) \(arguments.joined(separator: " ")) did not finish within \(timeout)")
        }
        return CommandResult(
            command: [process.executablePath] + arguments, termination: termination,
            stdout: process.stdout(), stderr: process.stderr())
    }
}

/// glibc spawn extensions that Swift's Glibc module does not import (they need `_GNU_SOURCE`).
enum SpawnExtensions {
    typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>?, Int32) -> Int32
    typealias AddChdir =
        @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>?, UnsafePointer<CChar>?) ->
        Int32

    static let addCloseFrom: AddCloseFrom? = {
        guard let symbol = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np") else { return nil }
        return unsafeBitCast(symbol, to: AddCloseFrom.self)
    }()

    static let addChdir: AddChdir? = {
        guard let symbol = dlsym(nil, "posix_spawn_file_actions_addchdir_np") else { return nil }
        return unsafeBitCast(symbol, to: AddChdir.self)
    }()
}

/// Finds the executables this package builds.
public enum ProductLocator {
    /// The path of the built executable `name` (e.g. "ecto-tunnel"):
    /// 1. the environment variable `<NAME>_BIN` (`ECTO_TUNNEL_BIN`) if set;
    /// 2. next to the running test bundle (`.build/<triple>/<config>/X.xctest` → that directory);
    /// 3. walking up from `filePath` (the caller's source file) to a `.build` directory and taking
    ///    `debug/<name>` or `release/<name>` there, whichever is newer.
    public static func binary(_ name: String, filePath: StaticString = #filePath) throws -> String {
        let variable = name.uppercased().replacingOccurrences(of: "-", with: "_") + "_BIN"
        if let fromEnvironment = ProcessInfo.processInfo.environment[variable], !fromEnvironment.isEmpty {
            guard access(fromEnvironment, X_OK) == 0 else {
                throw TestSupportError(.notFound, "\(variable)=\(fromEnvironment) is not an executable file")
            }
            return fromEnvironment
        }
        var tried: [String] = []
        for directory in bundleDirectories() {
            let candidate = directory + "/" + name
            tried.append(candidate)
            if isExecutableFile(candidate) { return candidate }
        }
        var directory = URL(fileURLWithPath: "\(filePath)").deletingLastPathComponent()
        while directory.path != "/" {
            let build = directory.appendingPathComponent(".build").path
            let candidates = ["debug", "release"].map { build + "/" + $0 + "/" + name }
            tried.append(contentsOf: candidates)
            let found = candidates.filter(isExecutableFile)
            if let newest = found.max(by: { modificationTime($0) < modificationTime($1) }) {
                return newest
            }
            directory = directory.deletingLastPathComponent()
        }
        throw TestSupportError(
            .notFound,
            "cannot find the built \(name) (set \(variable)); tried: \(tried.joined(separator: ", "))")
    }

    /// Directories that hold the running test bundle: the parent of the nearest `*.xctest` ancestor of
    /// the executable, and the executable's own directory.
    static func bundleDirectories() -> [String] {
        var executables: [String] = []
        if let resolved = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            executables.append(resolved)
        }
        if let first = CommandLine.arguments.first, first.hasPrefix("/") {
            executables.append(first)
        }
        var result: [String] = []
        for executable in executables {
            var url = URL(fileURLWithPath: executable)
            let ownDirectory = url.deletingLastPathComponent().path
            while url.path != "/" {
                if url.lastPathComponent.hasSuffix(".xctest") {
                    result.append(url.deletingLastPathComponent().path)
                    break
                }
                url = url.deletingLastPathComponent()
            }
            result.append(ownDirectory)
        }
        var seen = Set<String>()
        return result.filter { seen.insert($0).inserted }
    }

    private static func modificationTime(_ path: String) -> Int {
        var info = stat()
        return stat(path, &info) == 0 ? info.st_mtim.tv_sec : 0
    }
}
