import CEctoLinux
import Dispatch
import EctoConfig
import EctoStatus
import EctoPlatform
import Logging
import Synchronization

/// A request to a tunnel's driver thread.
public enum TunnelCommand: Sendable {
    /// Stop accepting, let open connections finish for up to `grace`, disconnect, end the thread.
    case stop(grace: Duration)
    /// Disable (state `down`): close the session and the listener.
    case disable
    /// Enable again.
    case enable
    /// Drop the session and reconnect now, skipping backoff (also retries a `failed` tunnel).
    case reconnect
    /// The network changed or the machine resumed (`reason` says which, for the log): a session
    /// that is up must show a sign of life within a few seconds or is replaced; a tunnel in
    /// backoff retries at once.
    case networkChanged(reason: String)
    /// A liveness probe for the supervisor's watchdog: the driver answers by bumping
    /// `TunnelHandle.pongs`, which shows its loop is still turning.
    case ping
    /// Hand over to `successor` (the same tunnel with a new config): give it the listener and the
    /// clients still waiting for a channel, stop accepting, let open connections finish on the
    /// current session for up to `drain`, then disconnect and end the thread.
    case retire(successor: TunnelHandle, drain: Duration)
    /// From the predecessor: its listening sockets (those it still had; the successor keeps the
    /// ones whose address it forwards, closes the others and binds the rest itself) and its
    /// waiting clients.
    case adopt(listeners: [HandedListener], clients: [HandedClient])
    /// From another session of the same tunnel (`sessions = N`): clients to serve, nothing else.
    case assign(clients: [HandedClient])
    /// From the first session of the same tunnel: it is up, so the others may connect now.
    case primaryUp
}

/// A client accepted by one driver and handed to another before its channel opened.
public struct HandedClient: Sendable {
    let fd: Int32
    let peer: Endpoint
    /// The listen address of the forward it came in on: the receiver serves it through its own
    /// forward with that address (and resets it when it has none).
    let local: Endpoint
    let holdDeadline: BootInstant
}

/// A listening socket handed from a retiring driver to its successor, with the address it listens on.
public struct HandedListener: Sendable {
    let fd: Int32
    let local: Endpoint
}

/// The thread-safe face of one tunnel: other threads send it commands and read its status; the
/// driver thread behind it owns every socket and libssh2 object.
public final class TunnelHandle: Sendable {
    public let name: String
    let wakeup: WakeupFD
    private let inbox = Mutex<[TunnelCommand]>([])
    /// Answers of `HostResolver` lookups (ticket, addresses or error), taken with the commands.
    private let resolutions = Mutex<[(UInt64, Result<ResolvedAddresses, SystemError>)]>([])
    private let statusBox: Mutex<TunnelStatus>
    private let finished = DispatchSemaphore(value: 0)
    private let finishedFlag = Mutex(false)
    fileprivate let onChange: @Sendable (TunnelStatus) -> Void
    private let pongCounter = Atomic<UInt64>(0)
    fileprivate let threadIDBox = Atomic<Int32>(0)
    /// The driver thread's name ("tunnel NAME", "tunnel NAME 2" for a further session).
    let threadName: String

    /// The driver thread as the kernel knows it: `"tunnel NAME" (tid 1234)`, its name cut to the 15
    /// bytes the kernel keeps, as crash backtraces and `ps -L` show it.
    public var threadDescription: String {
        let tid = threadIDBox.load(ordering: .acquiring)
        let name = kernelThreadName(threadName)
        return tid == 0 ? "\"\(name)\" (not started)" : "\"\(name)\" (tid \(tid))"
    }

    /// Starts the driver thread for `config`. `onChange` is called (on the driver thread) after
    /// every state change.
    /// With `awaitListener`, the driver binds nothing and waits for `.adopt` from the handle it
    /// replaces (see `.retire`).
    /// `lane` and `group`: this driver runs session `lane` of a tunnel with `sessions = N` (see
    /// `SessionGroup`); lane 0 owns the listener.
    static func start(
        config: TunnelConfig, logger: Logger, awaitListener: Bool = false, enabled: Bool? = nil,
        lane: Int = 0, group: SessionGroup? = nil, preflight: Bool = false,
        onChange: @escaping @Sendable (TunnelStatus) -> Void = { _ in }
    ) throws(SystemError) -> TunnelHandle {
        var config = config
        if let enabled { config.enabled = enabled }
        let handle = try TunnelHandle(
            config: config, threadName: group == nil ? "tunnel \(config.name)" : "tunnel \(config.name) \(lane + 1)",
            onChange: onChange)
        startThread(name: handle.threadName, stackSize: 512 * 1024) { [config] in
            // The kernel's id of this thread (startThread named it): crash backtraces, `ps -L` and
            // the watchdog's complaints name the thread of a stuck tunnel with them.
            handle.threadIDBox.store(ecto_thread_id(), ordering: .releasing)
            let driver = TunnelDriver(
                config: config, handle: handle, logger: logger, awaitListener: awaitListener, lane: lane, group: group,
                preflight: preflight)
            driver.run()
            handle.finishedFlag.withLock { $0 = true }
            handle.finished.signal()
            handle.onChange(handle.status)
        }
        return handle
    }

    private init(
        config: TunnelConfig, threadName: String, onChange: @escaping @Sendable (TunnelStatus) -> Void
    ) throws(SystemError) {
        self.name = config.name
        self.threadName = threadName
        self.wakeup = try WakeupFD()
        self.onChange = onChange
        self.statusBox = Mutex(
            TunnelStatus(
                name: config.name, state: config.enabled ? .connecting : .down, enabled: config.enabled,
                target: config.target.description, local: config.local.description,
                remote: config.remote.description,
                forwards: config.forwards.map { ($0.local.description, $0.remote.description) }))
    }

    /// Queues a command and wakes the driver.
    public func send(_ command: TunnelCommand) {
        inbox.withLock { $0.append(command) }
        wakeup.signal()
    }

    /// The latest status snapshot.
    public var status: TunnelStatus { statusBox.withLock { $0 } }

    /// True once the driver thread has ended.
    public var isFinished: Bool { finishedFlag.withLock { $0 } }

    /// How many `.ping` commands the driver thread has answered.
    public var pongs: UInt64 { pongCounter.load(ordering: .acquiring) }

    /// Blocks until the driver thread has ended (after `.stop`). Returns false on timeout.
    @discardableResult
    public func wait(timeout: Duration) -> Bool {
        let nanos = timeout.components.seconds * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000
        return finished.wait(timeout: .now() + .nanoseconds(Int(nanos))) == .success
    }

    // MARK: Driver side

    func takeCommands() -> [TunnelCommand] {
        inbox.withLock { commands in
            defer { commands.removeAll(keepingCapacity: true) }
            return commands
        }
    }

    /// From a `HostResolver` thread: the answer to lookup `ticket`.
    func postResolution(ticket: UInt64, _ result: Result<ResolvedAddresses, SystemError>) {
        resolutions.withLock { $0.append((ticket, result)) }
        wakeup.signal()
    }

    func takeResolutions() -> [(UInt64, Result<ResolvedAddresses, SystemError>)] {
        resolutions.withLock { answers in
            defer { answers.removeAll() }
            return answers
        }
    }

    func pong() {
        pongCounter.add(1, ordering: .releasing)
    }

    func update(notify: Bool, _ body: (inout TunnelStatus) -> Void) {
        guard notify else { return statusBox.withLock { body(&$0) } }  // no copy for nobody
        let snapshot = statusBox.withLock { status -> TunnelStatus in
            body(&status)
            return status
        }
        if notify { onChange(snapshot) }
    }
}
