import Foundation
import Glibc

/// Two fresh network namespaces, "server" and "client", joined by a veth pair, for injecting
/// network faults (link cut, blackhole, resets, loss) between an SSH client and server. Needs root.
///
/// ```
///   client namespace (ecto-c-PID-N)              server namespace (ecto-s-PID-N)
///   lo 127.0.0.1   vc 10.213.X.2/24  ◀──veth──▶  vs 10.213.X.1/24   lo 127.0.0.1
/// ```
///
/// Both veth ends are created directly inside their namespaces (nothing appears in the host's
/// namespace), the /24 exists only inside them, and `lo` is up in both. IPv6 stays on: a fresh
/// veth's IPv6 autoconfiguration (link-local address, duplicate address detection) sends rtnetlink
/// address/route events for a second or two after creation, which a daemon watching the network
/// must not take for a network change. Every fault acts only on the
/// veth, so each namespace's own loopback keeps working: a daemon in the client namespace still
/// accepts its local clients on 127.0.0.1, and an sshd in the server namespace still reaches an echo
/// server on its 127.0.0.1.
///
/// What runs where:
/// - short commands: `run(in:_:)` (`ip netns exec NS …`);
/// - long-running processes: `spawn(in:…)` or `commandPrefix(in:)` (`nsenter --net=/run/netns/NS`,
///   which execs, so `Subprocess.pid` is the process itself); sshd: `SSHServer(…, namespace:
///   lab.serverNamespace, listenAddress: lab.serverAddress)`;
/// - sockets of the test process (`TCPClient`, `EchoServer`, `SinkServer`, …): create them inside
///   `withNamespace(_:_:)`, which runs the closure on a fresh thread that has joined the namespace.
///   A socket stays in the namespace it was created in, whichever thread uses it later.
///
/// Faults (each idempotent): `linkDown()`/`linkUp()` (the client's veth end), `blackhole()`/
/// `unblackhole()` (everything arriving over the veth is dropped, in both namespaces: a half-open
/// path on which nobody gets an error), `rejectWithReset()`/`unreject()` (the server namespace
/// answers every TCP segment from the veth with a reset), `loss(percent:)`/`clearLoss()` (random
/// drops of arriving packets on both ends), `clearFaults()`. They are iptables rules in chains of
/// their own (`ecto-blackhole`, `ecto-reject`, `ecto-loss`), jumped to from `INPUT -i <veth>`.
///
/// `cleanup()` deletes both namespaces (idempotent); it also runs on deinit and, for labs still
/// alive then, when the test process exits normally. Stop the processes you started inside first:
/// a process (or a socket) keeps its namespace alive after the name is deleted. Namespaces left by a
/// test process that crashed are removed by the next lab created (`removeStale()`).
///
/// `@unchecked Sendable`: every stored property is immutable except the cleanup flag, which lives
/// in a `Locked`.
public final class NetworkLab: @unchecked Sendable {
    /// The namespace where the SSH server (and the servers behind it) run.
    public let serverNamespace: String
    /// The namespace where the tunnel daemon and its local clients run.
    public let clientNamespace: String
    /// The veth end in the server namespace.
    public let serverDevice = "vs"
    /// The veth end in the client namespace.
    public let clientDevice = "vc"
    /// The server's veth address, e.g. "10.213.17.1".
    public let serverAddress: String
    /// The client's veth address, e.g. "10.213.17.2".
    public let clientAddress: String
    /// The lab's /24, e.g. "10.213.17.0/24".
    public let subnet: String

    /// See `init(lossTolerantTCP:)`.
    public let lossTolerantTCP: Bool

    private let cleanedUp = Locked(false)

    private static let counter = Locked(0)
    private static let live = Locked<[ObjectIdentifier: () -> Void]>([:])
    private static let exitHook: Void = {
        atexit { NetworkLab.cleanupAllAtExit() }
    }()
    private static let staleRemoved: Void = { NetworkLab.removeStale() }()

    /// Creates the two namespaces, the veth pair, addresses, and the fault chains (about 0.1 s).
    ///
    /// - Parameter lossTolerantTCP: make TCP in the lab behave under random loss roughly as it does on
    ///   a real lossy link, for `loss(percent:)`: packets on the veth are wire-sized (`gso_max_segs 1`;
    ///   otherwise one dropped "packet" is a 64 KiB GSO batch of 45 segments), TCP timestamps are off
    ///   and the lab route has `rto_min 10ms`. Without this, on a ~20 µs link the kernel's RTT estimate
    ///   balloons after retransmissions (seen: rtt 2.9 s, rto 29.7 s) and a connection at 20 % loss
    ///   stalls for tens of seconds: plain TCP (no tunnel) moved 16 MiB within 60 s in 2 of 8 runs;
    ///   with these settings, in 4 of 4 (11–28 s). Connections made before `init` returns are the
    ///   only ones it applies to fully (timestamps are negotiated at connect time).
    public init(lossTolerantTCP: Bool = false) throws {
        self.lossTolerantTCP = lossTolerantTCP
        guard geteuid() == 0 else {
            throw TestSupportError(.notFound, "NetworkLab needs root (network namespaces, iptables)")
        }
        _ = NetworkLab.staleRemoved
        _ = NetworkLab.exitHook
        let n = NetworkLab.counter.withLock { counter -> Int in
            counter += 1
            return counter
        }
        let pid = Int(getpid())
        serverNamespace = "ecto-s-\(pid)-\(n)"
        clientNamespace = "ecto-c-\(pid)-\(n)"
        let x = (pid + n) % 254 + 1
        subnet = "10.213.\(x).0/24"
        serverAddress = "10.213.\(x).1"
        clientAddress = "10.213.\(x).2"
        do {
            try NetworkLab.ip(["netns", "add", serverNamespace])
            try NetworkLab.ip(["netns", "add", clientNamespace])
            for namespace in [serverNamespace, clientNamespace] where lossTolerantTCP {
                try Subprocess.run(
                    "ip", ["netns", "exec", namespace, "sysctl", "-q", "-w", "net.ipv4.tcp_timestamps=0"]
                ).check()
            }
            try NetworkLab.ip([
                "link", "add", serverDevice, "netns", serverNamespace, "type", "veth",
                "peer", "name", clientDevice, "netns", clientNamespace,
            ])
            try NetworkLab.ip(["-n", serverNamespace, "addr", "add", "\(serverAddress)/24", "dev", serverDevice])
            try NetworkLab.ip(["-n", clientNamespace, "addr", "add", "\(clientAddress)/24", "dev", clientDevice])
            for (namespace, device) in [(serverNamespace, serverDevice), (clientNamespace, clientDevice)] {
                if lossTolerantTCP { try NetworkLab.ip(["-n", namespace, "link", "set", device, "gso_max_segs", "1"]) }
                try NetworkLab.ip(["-n", namespace, "link", "set", "lo", "up"])
                try NetworkLab.ip(["-n", namespace, "link", "set", device, "up"])
                let rules = """
                    *filter
                    :ecto-blackhole - [0:0]
                    :ecto-reject - [0:0]
                    :ecto-loss - [0:0]
                    -A INPUT -i \(device) -j ecto-blackhole
                    -A INPUT -i \(device) -j ecto-reject
                    -A INPUT -i \(device) -j ecto-loss
                    COMMIT

                    """
                try Subprocess.run(
                    "ip", ["netns", "exec", namespace, "iptables-restore"], stdin: rules, timeout: .seconds(20)
                ).check()
            }
            try tuneRoutes()
        } catch {
            deleteNamespaces()
            throw error
        }
        let names = (serverNamespace, clientNamespace)
        NetworkLab.live.withLock {
            $0[ObjectIdentifier(self)] = {
                _ = try? NetworkLab.ip(["netns", "delete", names.0])
                _ = try? NetworkLab.ip(["netns", "delete", names.1])
            }
        }
    }

    deinit { cleanup() }

    // MARK: Running things inside

    /// Runs a short command inside `namespace` (`ip netns exec`) to completion.
    @discardableResult
    public func run(
        in namespace: String, _ arguments: [String], timeout: Duration = .seconds(30)
    ) throws
        -> CommandResult
    {
        guard let first = arguments.first else { throw TestSupportError(.notFound, "no command given") }
        let executable = try Subprocess.resolve(first)
        return try Subprocess.run(
            "ip", ["netns", "exec", namespace, executable] + arguments.dropFirst(), timeout: timeout)
    }

    /// Like `run(in:_:)`, throwing `.commandFailed` unless the command exits with 0.
    @discardableResult
    public func check(
        in namespace: String, _ arguments: [String], timeout: Duration = .seconds(30)
    ) throws
        -> CommandResult
    {
        try run(in: namespace, arguments, timeout: timeout).check()
    }

    /// The arguments that run a command inside `namespace` when put in front of it:
    /// `["/usr/bin/nsenter", "--net=/run/netns/NS", "--"]`. nsenter execs the command, so the
    /// process keeps nsenter's pid.
    public static func commandPrefix(in namespace: String) throws -> [String] {
        [try Subprocess.resolve("nsenter"), "--net=/run/netns/\(namespace)", "--"]
    }

    /// Starts a long-running process inside `namespace` (see `Subprocess.init` for the parameters).
    /// Its `pid` is the process itself (nsenter execs it).
    public func spawn(
        in namespace: String,
        _ executable: String,
        _ arguments: [String] = [],
        environment: [String: String] = ProcessInfo.processInfo.environment,
        stdoutPath: String? = nil,
        stderrPath: String? = nil,
        appendOutput: Bool = false,
        newProcessGroup: Bool = false
    ) throws -> Subprocess {
        let prefix = try NetworkLab.commandPrefix(in: namespace)
        return try Subprocess(
            prefix[0], Array(prefix.dropFirst()) + [try Subprocess.resolve(executable)] + arguments,
            environment: environment, stdoutPath: stdoutPath, stderrPath: stderrPath, appendOutput: appendOutput,
            newProcessGroup: newProcessGroup)
    }

    /// Runs `body` on a fresh thread that joined `namespace` (`setns(CLONE_NEWNET)`), and awaits it.
    /// Sockets created in `body` live in that namespace for good (servers, clients); the thread
    /// ends with `body`. Blocking work belongs here, as in `offload`.
    public func withNamespace<T: Sendable>(
        _ namespace: String, _ body: @escaping @Sendable () throws -> T
    )
        async throws -> T
    {
        try await NetworkLab.withNamespace(namespace, body)
    }

    /// The blocking twin of `withNamespace(_:_:)`: the calling thread waits for the fresh thread.
    public func withNamespaceBlocking<T: Sendable>(
        _ namespace: String, _ body: @escaping @Sendable () throws -> T
    )
        throws -> T
    {
        try NetworkLab.withNamespaceBlocking(namespace, body)
    }

    /// See the instance method; works for any named namespace (`/run/netns/NAME`).
    public static func withNamespace<T: Sendable>(
        _ namespace: String, _ body: @escaping @Sendable () throws -> T
    )
        async throws -> T
    {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, Error>) in
            let thread = Thread {
                continuation.resume(with: Result { try enter(namespace, then: body) })
            }
            thread.name = "EctoTestSupport.netns"
            thread.start()
        }
    }

    /// See the instance method.
    public static func withNamespaceBlocking<T: Sendable>(
        _ namespace: String, _ body: @escaping @Sendable () throws -> T
    ) throws -> T {
        let result = Locked<Result<T, Error>?>(nil)
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            let outcome = Result { try enter(namespace, then: body) }
            result.withLock { $0 = outcome }
            done.signal()
        }
        thread.name = "EctoTestSupport.netns"
        thread.start()
        done.wait()
        return try result.withLock { $0! }.get()
    }

    /// Joins `namespace` on the current thread, runs `body`, then returns the thread to the
    /// namespace it came from. Only for threads that end after.
    ///
    /// The return matters although the thread ends: the caller resumes its continuation (or
    /// signals) from this thread, and a thread the runtime creates from here for its pools
    /// (libdispatch's workers, which run Swift concurrency's tasks on Linux) inherits this
    /// thread's namespace for good. Left in the lab's namespace, such a pool thread later ran
    /// unrelated tests' code there: servers and `systemd --user` spawned from it could not be
    /// reached from the rest of the test process (SystemdTests' echo after a watchdog restart
    /// failed whenever FaultInjectionTests ran first in the same process).
    private static func enter<T>(_ namespace: String, then body: () throws -> T) throws -> T {
        let original = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)
        guard original >= 0 else { throw TestSupportError.system("open(/proc/thread-self/ns/net)") }
        defer { close(original) }
        let fd = open("/run/netns/\(namespace)", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw TestSupportError.system("open(/run/netns/\(namespace))") }
        defer { close(fd) }
        guard let setns = LinuxCalls.setns else {
            throw TestSupportError(.notFound, "setns is not available")
        }
        guard setns(fd, LinuxCalls.cloneNewNet) == 0 else {
            throw TestSupportError.system("setns(\(namespace), CLONE_NEWNET)")
        }
        defer {
            if setns(original, LinuxCalls.cloneNewNet) != 0 {
                // Never resume anyone from inside the lab: better to stop here, loudly.
                fatalError("cannot return the thread to its network namespace: \(String(cString: strerror(errno)))")
            }
        }
        return try body()
    }

    // MARK: Faults

    /// Takes the client's veth end down: the route to the server disappears on the client (connects
    /// fail with "network unreachable"), and the server's end loses its carrier.
    public func linkDown() throws {
        try NetworkLab.ip(["-n", clientNamespace, "link", "set", clientDevice, "down"])
    }

    /// Brings the client's veth end back up (the route comes back with it).
    public func linkUp() throws {
        try NetworkLab.ip(["-n", clientNamespace, "link", "set", clientDevice, "up"])
        try tuneRoutes()  // the kernel re-adds the prefix route without our attributes
    }

    /// With `lossTolerantTCP`, sets `rto_min 10ms` on the lab's route in both namespaces.
    private func tuneRoutes() throws {
        guard lossTolerantTCP else { return }
        for (namespace, device, address) in [
            (serverNamespace, serverDevice, serverAddress), (clientNamespace, clientDevice, clientAddress),
        ] {
            try NetworkLab.ip([
                "-n", namespace, "route", "replace", subnet, "dev", device, "proto", "kernel", "scope", "link",
                "src", address, "rto_min", "10ms",
            ])
        }
    }

    /// Drops every packet arriving over the veth, in both namespaces: a half-open path. Nobody gets
    /// an error; only timeouts (keepalives, TCP_USER_TIMEOUT, connect timeouts) can tell.
    public func blackhole() throws {
        try setChain("ecto-blackhole", in: [serverNamespace, clientNamespace], rule: ["-j", "DROP"])
    }

    /// Removes `blackhole()`.
    public func unblackhole() throws {
        try setChain("ecto-blackhole", in: [serverNamespace, clientNamespace], rule: nil)
    }

    /// The server namespace answers every TCP segment arriving over the veth with a reset: existing
    /// connections are reset at their next segment, new ones are refused at once.
    public func rejectWithReset() throws {
        try setChain(
            "ecto-reject", in: [serverNamespace], rule: ["-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"])
    }

    /// Removes `rejectWithReset()`.
    public func unreject() throws {
        try setChain("ecto-reject", in: [serverNamespace], rule: nil)
    }

    /// Drops `percent` % of the packets arriving over the veth, at random, in each of `namespaces`
    /// (default: both, i.e. loss both ways; `[serverNamespace]` drops only what the client sends).
    /// Replaces an earlier `loss`. See `init(lossTolerantTCP:)` for what 20 % does to TCP here.
    public func loss(percent: Double, arrivingIn namespaces: [String]? = nil) throws {
        guard percent > 0, percent <= 100 else { throw TestSupportError(.notFound, "loss percent must be in (0, 100]") }
        let probability = String(format: "%.4f", percent / 100)
        try setChain(
            "ecto-loss", in: namespaces ?? [serverNamespace, clientNamespace],
            rule: ["-m", "statistic", "--mode", "random", "--probability", probability, "-j", "DROP"])
    }

    /// Removes `loss(percent:)`.
    public func clearLoss() throws {
        try setChain("ecto-loss", in: [serverNamespace, clientNamespace], rule: nil)
    }

    /// Removes every iptables fault and brings the link up.
    public func clearFaults() throws {
        try unblackhole()
        try unreject()
        try clearLoss()
        try linkUp()
    }

    /// Packets dropped so far by a fault chain (`ecto-blackhole`, `ecto-reject`, `ecto-loss`) in
    /// `namespace`: a way to check that a fault really hit traffic.
    public func droppedPackets(chain: String, in namespace: String) throws -> Int {
        let result = try check(in: namespace, ["iptables", "-L", chain, "-v", "-n", "-x"])
        return result.stdout.split(separator: "\n").dropFirst(2).reduce(0) { sum, line in
            sum + (Int(line.split(separator: " ").first ?? "") ?? 0)
        }
    }

    /// Flushes `chain` in each namespace, then appends `rule` (nil: leave it empty).
    private func setChain(_ chain: String, in namespaces: [String], rule: [String]?) throws {
        for namespace in namespaces {
            var script = "*filter\n-F \(chain)\n"
            if let rule { script += "-A \(chain) " + rule.joined(separator: " ") + "\n" }
            script += "COMMIT\n"
            try Subprocess.run(
                "ip", ["netns", "exec", namespace, "iptables-restore", "--noflush"], stdin: script,
                timeout: .seconds(20)
            ).check()
        }
    }

    // MARK: Cleanup

    /// Deletes both namespaces (idempotent). Processes still running inside keep their namespace
    /// alive (unnamed) until they end.
    public func cleanup() {
        let first = cleanedUp.withLock { done -> Bool in
            defer { done = true }
            return !done
        }
        guard first else { return }
        _ = NetworkLab.live.withLock { $0.removeValue(forKey: ObjectIdentifier(self)) }
        deleteNamespaces()
    }

    /// True once `cleanup()` ran.
    public var isCleanedUp: Bool { cleanedUp.withLock { $0 } }

    private func deleteNamespaces() {
        for namespace in [clientNamespace, serverNamespace]
        where FileManager.default.fileExists(atPath: "/run/netns/\(namespace)") {
            _ = try? NetworkLab.ip(["netns", "delete", namespace])
        }
    }

    /// The names of every namespace that exists (`ip netns list`).
    public static func namespaces() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/run/netns")) ?? []).sorted()
    }

    /// Deletes namespaces named `ecto-s-PID-N` / `ecto-c-PID-N` whose process PID no longer exists
    /// (left by a test process that crashed). Called once per process, by the first lab.
    public static func removeStale() {
        for name in namespaces() {
            let parts = name.split(separator: "-")
            guard parts.count == 4, parts[0] == "ecto", parts[1] == "s" || parts[1] == "c",
                let pid = pid_t(parts[2]), Int(parts[3]) != nil, pid != getpid()
            else { continue }
            if Glibc.kill(pid, 0) == 0 || Glibc.errno == EPERM { continue }
            _ = try? ip(["netns", "delete", name])
        }
    }

    private static func cleanupAllAtExit() {
        let all = live.withLock { $0 }
        for delete in all.values { delete() }
    }

    @discardableResult
    static func ip(_ arguments: [String]) throws -> CommandResult {
        try Subprocess.run("ip", arguments, timeout: .seconds(20)).check()
    }
}

/// Linux calls that Swift's Glibc module does not import (they need `_GNU_SOURCE`).
enum LinuxCalls {
    typealias SetNS = @convention(c) (Int32, Int32) -> Int32
    static let cloneNewNet: Int32 = 0x4000_0000

    static let setns: SetNS? = {
        guard let symbol = dlsym(nil, "setns") else { return nil }
        return unsafeBitCast(symbol, to: SetNS.self)
    }()
}
