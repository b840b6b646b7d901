import CEctoLinux
import EctoConfig
import EctoPlatform
import EctoSSH
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// How the session reaches its target besides a plain TCP connection: the answer of a lookup on a
/// resolver thread (`HostResolver`), the jump hosts (`JumpChain`) and the proxy command
/// (`ProxyProcess`). The session itself runs over a socket either way; what carries it lives in
/// `carrier` for as long as the session does and ends with it.
extension TunnelDriver {
    /// What carries the session besides its socket.
    enum Carrier {
        case chain(JumpChain)
        case proxy(ProxyProcess)
    }

    /// The host the attempt connects to first: hop 1, or the target.
    var firstHost: SSHTarget { config.jump.first ?? config.target }

    /// Starts a lookup of the first host on a resolver thread (`Phase.resolving`).
    func startResolve() {
        resolveTicket &+= 1
        phase = .resolving(ticket: resolveTicket)
        HostResolver.start(host: firstHost.host, port: firstHost.port, ticket: resolveTicket, handle: handle)
    }

    /// A lookup's answer from the inbox. Answers to lookups this driver no longer waits for (timed
    /// out, torn down, stopped) are dropped.
    func resolved(ticket: UInt64, _ result: Result<ResolvedAddresses, SystemError>) {
        guard case .resolving(let current) = phase, current == ticket else { return }
        phase = .idle
        progress = true
        switch result {
        case .failure(let error):
            attemptFailed(
                AttemptFailure(.transport, "cannot resolve \(firstHost.host): \(error.operation)"), hop: firstHopName)
        case .success(let answer):
            connect(answer.addresses, from: 0, lastErrno: 0)
        }
    }

    /// The TCP connection to the first host is made: the jump hosts' chain starts on it, or the
    /// session itself.
    func connected(tcp fd: Int32) {
        guard !config.jump.isEmpty else {
            startHandshake(fd)
            return
        }
        let chain = JumpChain(config: config, logger: logger)
        do {
            try chain.start(tcp: fd)
        } catch {
            Posix.close(fd)
            phase = .idle
            attemptFailed(AttemptFailure(.transport, error.description))
            return
        }
        carrier = .chain(chain)
        phase = .jumping
        progress = true
    }

    // MARK: Proxy command

    /// Runs `proxy_command` with its stdin and stdout on one end of a socketpair and starts the
    /// session on the other; its stderr comes back through a second socketpair to the log.
    func startProxy(_ command: String) {
        let expanded = ProxyCommandLine.expand(
            command, host: config.target.host, port: config.target.port, user: config.target.user ?? "",
            name: config.sshHostAlias ?? config.target.host)
        let arguments = ProxyCommandLine.arguments(expanded)
        var io: [Int32] = [-1, -1]
        var errors: [Int32] = [-1, -1]
        var rc = ecto_socketpair(&io, 0)
        if rc == 0 {
            rc = ecto_socketpair(&errors, 0)
            if rc != 0 {
                Posix.close(io[0])
                Posix.close(io[1])
            }
        }
        guard rc == 0 else {
            attemptFailed(
                AttemptFailure(
                    .resources, "cannot start the proxy command: socketpair: \(String(cString: strerror(rc)))"))
            return
        }
        let pid: pid_t
        do {
            // The child's ends stay blocking (what programs expect of their stdio); ours are not.
            pid = try Spawn.start(arguments, stdin: io[1], stdout: io[1], stderr: errors[1], newProcessGroup: true)
        } catch {
            for fd in io + errors { Posix.close(fd) }
            // A program that is not there or may not be run: the operator must fix the config.
            attemptFailed(AttemptFailure(.local, "proxy_command: \(error)"))
            return
        }
        Posix.close(io[1])
        Posix.close(errors[1])
        _ = fcntl(io[0], F_SETFL, fcntl(io[0], F_GETFL) | O_NONBLOCK)
        _ = fcntl(errors[0], F_SETFL, fcntl(errors[0], F_GETFL) | O_NONBLOCK)
        logger.debug("proxy command started", metadata: ["proxy.pid": "\(pid)", "proxy.arguments": "\(arguments)"])
        carrier = .proxy(ProxyProcess(pid: pid, stderrFD: errors[0]))
        startHandshake(io[0])
    }

    // MARK: Serving the carrier

    /// Runs the chain's pass (when something of it is ready, it asked for another pass, or a
    /// keepalive or dead-peer deadline came) and reads the proxy command's stderr. True when the
    /// chain delivered bytes to the tunnel's own session (its socket has input now).
    @discardableResult
    func serviceCarrier(readiness: Bool) -> Bool {
        switch carrier {
        case nil:
            return false
        case .proxy(let proxy):
            // At the end of its stderr (closed, or the command ended) the descriptor leaves epoll:
            // level-triggered, an EOF would wake the loop for ever.
            if readiness, proxy.readErrors(logger) { proxy.closeErrors(poller: poller) }
            return false
        case .chain(let chain):
            let due = chain.nextDeadline().map { clock.now >= $0 } ?? false
            guard readiness || chain.progress || due || !chain.ready else { return false }
            switch chain.pass() {
            case .working:
                break
            case .ready(let fd):
                logger.info(
                    "jump: reached \(config.target.host):\(config.target.port) through \(config.jump.count) hop\(config.jump.count == 1 ? "" : "s")"
                )
                startHandshake(fd)
            case .failed(let failure, let hop):
                if isEstablished {
                    sessionLost(failure.message, hop: hop)
                } else {
                    attemptFailed(failure, hop: hop)
                }
                return false
            }
            if chain.progress { progress = true }
            return chain.deliveredInward
        }
    }

    /// Bytes the tunnel's own session has sent so far (0 without one).
    var sessionBytesSent: UInt64 {
        switch phase {
        case .handshaking(let session), .authenticating(let session, _), .established(let session):
            return session.bytesSent
        default: return 0
        }
    }

    /// Registers what the carrier waits for with epoll (see `JumpChain.interest(of:)`).
    func syncCarrierInterest() {
        guard let poller else { return }
        switch carrier {
        case nil:
            return
        case .proxy(let proxy):
            if !proxy.registered, proxy.stderrFD >= 0 {
                proxy.registered =
                    (try? poller.apply(.add(.input), fd: proxy.stderrFD, token: Token.proxyStderr)) != nil
            }
        case .chain(let chain):
            for hop in chain.hops {
                let (session, relay) = chain.interest(of: hop)
                let base = Token.chain - 2 * UInt64(hop.index)
                if let change = EpollChange.from(hop.registeredSession, to: session),
                    (try? poller.apply(change, fd: hop.session.socket, token: base)) != nil
                {
                    hop.registeredSession = session
                }
                if hop.relayFD >= 0, let change = EpollChange.from(hop.registeredRelay, to: relay),
                    (try? poller.apply(change, fd: hop.relayFD, token: base - 1)) != nil
                {
                    hop.registeredRelay = relay
                }
            }
        }
    }

    /// Ends what carried the session (after the session itself was torn down): the chain's hops,
    /// or the proxy command (killed with its process group, reaped, its last stderr logged).
    func endCarrier() {
        guard let current = carrier else { return }
        carrier = nil
        switch current {
        case .chain(let chain):
            chain.teardown(poller: poller)
        case .proxy(let proxy):
            proxy.end(poller: poller, logger: logger)
        }
    }

    /// The socket of this machine's own network connection for `session`: hop 1's with jump hosts,
    /// none with a proxy command (the command owns its connection), else the session's.
    func networkSocket(of session: SSHSession) -> Int32? {
        switch carrier {
        case .chain(let chain)?: return chain.hops.first?.session.socket
        case .proxy?: return nil
        case nil: return session.socket
        }
    }

    /// With jump hosts still being connected: the hop the attempt was at (for a timeout).
    var hopBeingConnected: String? {
        guard case .chain(let chain)? = carrier, !chain.ready else { return nil }
        return chain.hops.last?.name
    }

    /// How `status` names hop 1 before its session exists (resolve, connect).
    var firstHopName: String? { config.jump.isEmpty ? nil : "hop 1/\(config.jump.count) (\(firstHost))" }

    /// For a session lost with no hop to blame (the target's own session found the silence
    /// first): the first hop that has been silent for more than two keepalive intervals, if any,
    /// since a silent hop silences everything behind it.
    func silentHop() -> String? {
        guard case .chain(let chain)? = carrier, config.keepaliveInterval > .zero else { return nil }
        let limit = UInt64(2 * seconds(config.keepaliveInterval) * 1e9)
        return chain.hops.first(where: { $0.isRelaying && $0.session.nanosSinceLastReceive > limit })?.name
    }

    /// How the proxy command ended, when it already did (for the message of a lost session).
    func proxyExitNote() -> String {
        guard case .proxy(let proxy)? = carrier, let exit = proxy.exitIfEnded() else { return "" }
        return " (the proxy command \(exit))"
    }
}

/// A running `proxy_command`: its pid (leader of its own process group) and the read end of its
/// stderr, logged line by line with a tag, bounded so a chatty or looping command cannot flood
/// the log.
final class ProxyProcess {
    let pid: pid_t
    var stderrFD: Int32
    var registered = false
    private var exit: Spawn.Exit?
    private var partial: [UInt8] = []
    private var linesLogged = 0
    private var linesDropped = 0
    /// Lines logged per run of the command; the rest are counted.
    static let maxLines = 20
    /// Longer lines are cut here.
    static let maxLineBytes = 300

    init(pid: pid_t, stderrFD: Int32) {
        self.pid = pid
        self.stderrFD = stderrFD
    }

    /// Its exit, if it ended (reaped here; `end` then only reports it).
    func exitIfEnded() -> Spawn.Exit? {
        if exit == nil { exit = Spawn.reap(pid, blocking: false) }
        return exit
    }

    /// Reads what its stderr holds now (up to 64 KiB) and logs the complete lines. True at its end
    /// (EOF or an error).
    @discardableResult
    func readErrors(_ logger: Logger) -> Bool {
        guard stderrFD >= 0 else { return false }
        var buffer = [UInt8](repeating: 0, count: 4096)
        for _ in 0..<16 {
            let result: IOResult<Int>
            do {
                result = try buffer.withUnsafeMutableBytes { bytes throws(SystemError) in
                    try Posix.read(stderrFD, bytes)
                }
            } catch {
                flushErrors(logger, final: true)
                return true
            }
            guard case .done(let n) = result else { return false }  // nothing more now
            if n == 0 {
                flushErrors(logger, final: true)
                return true
            }
            partial += buffer[0..<n]
            flushErrors(logger, final: false)
        }
        return false
    }

    /// Stops reading its stderr (at its end, or when the session ends).
    func closeErrors(poller: Epoll?) {
        guard stderrFD >= 0 else { return }
        if registered { poller?.remove(stderrFD) }
        registered = false
        Posix.close(stderrFD)
        stderrFD = -1
    }

    private func flushErrors(_ logger: Logger, final: Bool) {
        while let newline = partial.firstIndex(of: 0x0A) {
            log(Array(partial[..<newline]), logger)
            partial.removeSubrange(...newline)
        }
        if partial.count > Self.maxLineBytes || (final && !partial.isEmpty) {
            log(partial, logger)
            partial.removeAll()
        }
    }

    private func log(_ line: [UInt8], _ logger: Logger) {
        var text = String(decoding: line.prefix(Self.maxLineBytes), as: UTF8.self)
        if text.hasSuffix("\r") { text.removeLast() }
        if text.isEmpty { return }
        guard linesLogged < Self.maxLines else {
            linesDropped += 1
            return
        }
        linesLogged += 1
        logger.warning(
            "proxy_command stderr: \(text)\(line.count > Self.maxLineBytes ? " …" : "")",
            metadata: ["proxy.pid": "\(pid)"])
    }

    /// Kills its process group and reaps it, after logging what is left on its stderr.
    func end(poller: Epoll?, logger: Logger) {
        readErrors(logger)
        flushErrors(logger, final: true)
        closeErrors(poller: poller)
        let ended = exit ?? Spawn.terminate(pid)
        if linesDropped > 0 { logger.warning("proxy_command stderr: \(linesDropped) more lines not logged") }
        logger.debug("proxy command ended: \(ended.map { "\($0)" } ?? "unknown")", metadata: ["proxy.pid": "\(pid)"])
    }
}
