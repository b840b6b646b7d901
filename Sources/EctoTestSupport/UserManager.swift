import Foundation
import Glibc

/// A real `systemd --user` for tests on a machine whose PID 1 is not systemd (the project's proven
/// recipe: a private mount namespace and delegated cgroups), run as a dedicated unprivileged test
/// user:
///
/// 1. the user `ectotest-sd` is created if absent (`useradd`, `usermod -p '*'`);
/// 2. a fresh home `/home/ectotest-sd/run-XXXXXX` (owned by the user; its `rt` subdirectory is the
///    manager's `XDG_RUNTIME_DIR`, so parallel managers never share sockets);
/// 3. delegated cgroups `ecto-test-PID-N.slice/user@UID.service` under both hierarchies
///    (hybrid v1 + v2), owned by the user;
/// 4. `unshare --mount --propagation private` runs a shell that mounts a tmpfs on `/run/systemd`
///    with `/run/systemd/system` in it (so systemd believes the system was booted with it), moves
///    itself into the cgroups and execs `setpriv … systemd --user` (no fork: the subprocess *is* the
///    manager once up).
///
/// `cleanup()` (also on deinit) kills every process in the cgroups (the manager and its services),
/// removes the cgroup directories and the home. Root is required (tests run as root here).
///
/// `@unchecked Sendable`: all stored properties are immutable after init except the cleanup flag,
/// which lives in a `Locked`.
public final class SystemdUserManager: @unchecked Sendable {
    public static let userName = "ectotest-sd"
    nonisolated(unsafe) private static var counter = 0
    private static let counterLock = NSLock()

    public let uid: uid_t
    public let gid: gid_t
    /// The manager's `HOME`.
    public let home: String
    /// The manager's `XDG_RUNTIME_DIR` (`%t`).
    public let runtimeDirectory: String
    /// `~/.config` (`%E`): units go to `configHome/systemd/user`.
    public let configHome: String
    /// The unshare → systemd --user process.
    public let process: Subprocess
    private let cgroups: [String]
    private let cleanedUp = Locked(false)

    /// Starts a manager and waits (at most `timeout`) until `SystemState` is `running`.
    /// `hiding`: directories covered by an empty tmpfs in the manager's mount namespace, so that
    /// neither it nor its services see them (the package tests hide the Swift toolchain).
    public init(timeout: Duration = .seconds(15), hiding: [String] = []) throws {
        guard geteuid() == 0 else {
            throw TestSupportError(
                .notFound, "a systemd --user test manager needs root (to create cgroups and a mount namespace)")
        }
        (uid, gid) = try Self.ensureUser()
        let base = "/home/\(Self.userName)"
        var template = Array("\(base)/run-XXXXXX".utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw TestSupportError.system("mkdtemp(\(base)/run-XXXXXX)")
        }
        home = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        runtimeDirectory = home + "/rt"
        configHome = home + "/.config"
        let uid = self.uid
        let gid = self.gid
        let home = self.home
        for directory in [
            runtimeDirectory, configHome, configHome + "/systemd", configHome + "/systemd/user", home + "/.ssh",
        ] {
            mkdir(directory, 0o700)
        }
        for path in [
            home, runtimeDirectory, configHome, configHome + "/systemd", configHome + "/systemd/user", home + "/.ssh",
        ] {
            chown(path, uid, gid)
        }
        chmod(home, 0o700)

        let slice = Self.counterLock.withLock {
            Self.counter += 1
            return "ecto-test-\(getpid())-\(Self.counter).slice"
        }
        var made: [String] = []
        for hierarchy in ["unified", "systemd"] {
            let sliceDirectory = "/sys/fs/cgroup/\(hierarchy)/\(slice)"
            let serviceDirectory = sliceDirectory + "/user@\(uid).service"
            guard mkdir(sliceDirectory, 0o755) == 0, mkdir(serviceDirectory, 0o755) == 0 else {
                let error = TestSupportError.system("mkdir(\(serviceDirectory))")
                Self.removeCgroups(made + [serviceDirectory, sliceDirectory])
                try? FileManager.default.removeItem(atPath: home)
                throw error
            }
            made += [serviceDirectory, sliceDirectory]
            Self.chownTree(serviceDirectory, uid, gid)
        }
        cgroups = made

        let script = """
            set -e
            mount -t tmpfs -o mode=755 tmpfs /run/systemd
            mkdir /run/systemd/system
            \(hiding.map { "mount -t tmpfs -o mode=755,size=1m tmpfs '\($0)'\n" }.joined())echo $$ > /sys/fs/cgroup/unified/\(slice)/user@\(uid).service/cgroup.procs
            echo $$ > /sys/fs/cgroup/systemd/\(slice)/user@\(uid).service/cgroup.procs
            exec setpriv --reuid=\(uid) --regid=\(gid) --init-groups env -i HOME=\(home) USER=\(Self.userName) \
            LOGNAME=\(Self.userName) PATH=/usr/local/bin:/usr/bin:/bin XDG_RUNTIME_DIR=\(runtimeDirectory) \
            /lib/systemd/systemd --user
            """
        let log = home + "/manager.log"
        do {
            process = try Subprocess(
                "unshare", ["--mount", "--propagation", "private", "sh", "-c", script], environment: [:],
                stdoutPath: log, stderrPath: log)
        } catch {
            Self.removeCgroups(made)
            try? FileManager.default.removeItem(atPath: home)
            throw error
        }
        do {
            try waitUntilBlocking(timeout: timeout, "systemd --user to be running\n\(readFileString(log) ?? "")") {
                guard self.process.isRunning else {
                    throw TestSupportError(.serverFailed, "systemd --user exited: \(readFileString(log) ?? "")")
                }
                let state = try? self.systemctl(["show", "--property=SystemState", "--value"], timeout: .seconds(5))
                return state?.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "running"
            }
        } catch {
            cleanup()
            throw error
        }
    }

    deinit { cleanup() }

    /// The environment of a client of this manager (systemctl, ecto-tunnel install).
    public var clientEnvironment: [String: String] {
        [
            "HOME": home, "USER": Self.userName, "LOGNAME": Self.userName, "PATH": "/usr/local/bin:/usr/bin:/bin",
            "XDG_RUNTIME_DIR": runtimeDirectory,
        ]
    }

    /// Runs `executable arguments` as the test user with `clientEnvironment` plus `environment`.
    public func runAsUser(
        _ executable: String, _ arguments: [String], environment: [String: String] = [:],
        timeout: Duration = .seconds(60)
    ) throws -> CommandResult {
        var env = clientEnvironment
        for (key, value) in environment { env[key] = value }
        let setpriv =
            ["--reuid=\(uid)", "--regid=\(gid)", "--init-groups", "env", "-i"]
            + env.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        var result = try Subprocess.run(
            "setpriv", setpriv + [executable] + arguments, environment: [:], timeout: timeout)
        result.command = [executable] + arguments
        return result
    }

    /// `systemctl --user ARGUMENTS` as the test user.
    public func systemctl(_ arguments: [String], timeout: Duration = .seconds(30)) throws -> CommandResult {
        try runAsUser("/usr/bin/systemctl", ["--user"] + arguments, timeout: timeout)
    }

    /// One property of a unit (`systemctl --user show -p NAME --value UNIT`).
    public func property(_ name: String, of unit: String) throws -> String {
        try systemctl(["show", "--property=\(name)", "--value", unit]).check().stdout
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Writes a file owned by the test user (directories on the way are created, owned by it too).
    @discardableResult
    public func writeFile(_ path: String, _ contents: String, mode: mode_t = 0o600) throws -> String {
        var directory = (path as NSString).deletingLastPathComponent
        var missing: [String] = []
        while !FileManager.default.fileExists(atPath: directory) {
            missing.append(directory)
            directory = (directory as NSString).deletingLastPathComponent
        }
        for created in missing.reversed() {
            guard mkdir(created, 0o700) == 0 else { throw TestSupportError.system("mkdir(\(created))") }
            chown(created, uid, gid)
        }
        try EctoTestSupport.writeFile(path, contents, mode: mode)
        chown(path, uid, gid)
        return path
    }

    /// Hands an existing file to the test user.
    public func giveToUser(_ path: String) { chown(path, uid, gid) }

    /// The manager's own stderr (its log, without journald).
    public var log: String { readFileString(home + "/manager.log") ?? "" }

    /// Kills every process in the manager's cgroups (services first, then the manager), removes
    /// the cgroups and the home directory. Idempotent.
    public func cleanup() {
        let first = cleanedUp.withLock { done -> Bool in
            defer { done = true }
            return !done
        }
        guard first else { return }
        let deadline = ContinuousClock.now.advanced(by: .seconds(5))
        while ContinuousClock.now < deadline {
            let pids = cgroups.flatMap(Self.processes(inCgroupTree:))
            if pids.isEmpty { break }
            for pid in pids { kill(pid, SIGKILL) }
            _ = process.waitTermination(timeout: .milliseconds(50))
        }
        _ = process.kill()
        Self.removeCgroups(cgroups)
        if let keep = ProcessInfo.processInfo.environment["ECTO_TEST_KEEP_DIRS"], !keep.isEmpty, keep != "0" {
            print("EctoTestSupport: keeping \(home)")
        } else {
            try? FileManager.default.removeItem(atPath: home)
        }
    }

    // MARK: Helpers

    private static func ensureUser() throws -> (uid_t, gid_t) {
        if let entry = getpwnam(userName) { return (entry.pointee.pw_uid, entry.pointee.pw_gid) }
        try Subprocess.run(
            "useradd", ["--create-home", "--shell", "/bin/sh", userName],
            environment: ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin"]
        ).check()
        // useradd leaves the account locked; "*" unlocks it without a usable password.
        try Subprocess.run("usermod", ["-p", "*", userName], environment: ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin"])
            .check()
        guard let entry = getpwnam(userName) else {
            throw TestSupportError(.notFound, "useradd \(userName) succeeded but getpwnam does not find it")
        }
        return (entry.pointee.pw_uid, entry.pointee.pw_gid)
    }

    private static func chownTree(_ path: String, _ uid: uid_t, _ gid: gid_t) {
        chown(path, uid, gid)
        for name in (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [] {
            chown(path + "/" + name, uid, gid)
        }
    }

    static func processes(inCgroupTree path: String) -> [pid_t] {
        var result: [pid_t] = []
        if let procs = readFileString(path + "/cgroup.procs") {
            result += procs.split(separator: "\n").compactMap { pid_t($0) }
        }
        var isDirectory: ObjCBool = false
        for name in (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        where FileManager.default.fileExists(atPath: path + "/" + name, isDirectory: &isDirectory)
            && isDirectory.boolValue
        {
            result += processes(inCgroupTree: path + "/" + name)
        }
        return result
    }

    /// Removes cgroup directories depth-first (rmdir; a cgroup's files are virtual).
    static func removeCgroups(_ paths: [String]) {
        func remove(_ path: String) {
            var isDirectory: ObjCBool = false
            for name in (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
            where FileManager.default.fileExists(atPath: path + "/" + name, isDirectory: &isDirectory)
                && isDirectory.boolValue
            {
                remove(path + "/" + name)
            }
            for _ in 0..<50 {
                if rmdir(path) == 0 || errno == ENOENT { return }
                usleep(20_000)
            }
        }
        for path in paths { remove(path) }
    }
}
