import EctoConfig
import EctoHostKeys
import EctoSSH
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// Establishing and losing the SSH session: TCP connect, handshake, host key, authentication.
extension TunnelDriver {
    func startAttempt() {
        guard stopping == nil else { return }
        if isPrimary && !awaitingListener && listeners.contains(where: { $0.fd < 0 && $0.retryAt == nil }) {
            // The local side first (a busy port retried): without a listener the session serves
            // nobody. A forward that cannot listen while another does retries on its own.
            bindListeners()
            guard anyListening else { return }
        }
        let now = clock.now
        attemptDeadline = now.advanced(by: config.connectTimeout)
        logger.debug("connecting")
        if let command = config.proxyCommand {
            startProxy(command)
            return
        }
        // getaddrinfo runs on a resolver thread; `resolved` continues with `connect`.
        startResolve()
    }

    /// Tries `addresses[index...]` in order until a connect is in flight or succeeded.
    func connect(_ addresses: [sockaddr_storage], from start: Int, lastErrno: Int32) {
        var lastErrno = lastErrno
        for index in start..<addresses.count {
            var address = addresses[index]
            let fd = socket(
                Int32(address.ss_family), Int32(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue),
                0)
            if fd < 0 {
                lastErrno = errno
                continue
            }
            configureSSHSocket(fd)
            let addressLength = SocketAddress.length(of: address)
            let rc = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, addressLength) }
            }
            if rc == 0 {
                connected(tcp: fd)
                return
            }
            if errno == EINPROGRESS {
                phase = .connectingTCP(fd: fd, addresses: addresses, index: index)
                return
            }
            lastErrno = errno
            Posix.close(fd)
        }
        let reason = lastErrno == 0 ? "no address" : String(cString: strerror(lastErrno))
        let kind: FailureKind
        switch lastErrno {
        case ECONNREFUSED: kind = .refused
        // This process or the machine ran out of descriptors, buffers, memory or local ports:
        // our side, not the server's.
        case EMFILE, ENFILE, ENOBUFS, ENOMEM, EADDRNOTAVAIL: kind = .resources
        default: kind = .transport
        }
        attemptFailed(
            AttemptFailure(
                kind,
                "cannot connect to \(config.jump.isEmpty ? "" : "jump host ")\(firstHost.host):\(firstHost.port): \(reason)"
            ),
            hop: firstHopName)
    }

    /// TCP-level liveness on the SSH socket, on top of the SSH keepalives. TCP_USER_TIMEOUT (how
    /// long sent data may stay unacknowledged) is a backstop at twice the dead-peer time: on a
    /// lossy but working link one segment can sit in exponential retransmission backoff for
    /// longer than interval × count_max while data keeps flowing (seen under 20 % loss), and the
    /// SSH-level dead-peer rule already ends a session that receives nothing for that long.
    private func configureSSHSocket(_ fd: Int32) {
        Posix.setOption(fd, Int32(IPPROTO_TCP), TCP_NODELAY, 1)
        let interval = Int32(clamping: config.keepaliveInterval.components.seconds)
        guard interval > 0 else { return }
        Posix.setOption(fd, SOL_SOCKET, SO_KEEPALIVE, 1)
        Posix.setOption(fd, Int32(IPPROTO_TCP), TCP_KEEPIDLE, interval)
        Posix.setOption(fd, Int32(IPPROTO_TCP), TCP_KEEPINTVL, interval)
        Posix.setOption(fd, Int32(IPPROTO_TCP), TCP_KEEPCNT, Int32(clamping: config.keepaliveCountMax))
        Posix.setOption(
            fd, Int32(IPPROTO_TCP), TCP_USER_TIMEOUT,
            Int32(clamping: 2 * Int(interval) * config.keepaliveCountMax * 1000))
    }

    func startHandshake(_ fd: Int32) {
        let session: SSHSession
        do {
            session = try SSHSession(socket: fd)
        } catch {
            Posix.close(fd)
            phase = .idle  // closed here: the teardown in attemptFailed must not close it again
            attemptFailed(AttemptFailure(.transport, error.description))
            return
        }
        // Prefer the host key algorithms known_hosts already has for this host, as ssh does, so a
        // server with several host keys presents the one we can check.
        if config.hostKeyFingerprint == nil, let known = try? KnownHostsFile.load(path: config.knownHosts) {
            let preferred = known.knownAlgorithms(host: config.knownHostsKey.host, port: config.knownHostsKey.port)
            if !preferred.isEmpty {
                let supported = session.supportedHostKeyAlgorithms
                let order = preferred.filter(supported.contains) + supported.filter { !preferred.contains($0) }
                try? session.preferHostKeyAlgorithms(order)
            }
        }
        phase = .handshaking(session)
        progress = true
    }

    /// Advances whatever the session is doing, after epoll said something about its socket.
    func advanceSession(sshEvents: EpollEvents) {
        switch phase {
        case .idle, .resolving, .jumping:
            return
        case .connectingTCP(let fd, let addresses, let index):
            guard !sshEvents.isEmpty else { return }
            let code = Posix.socketError(fd)
            if code == 0 {
                connected(tcp: fd)
                advanceSession(sshEvents: [])
            } else {
                Posix.close(fd)
                phase = .idle
                connect(addresses, from: index + 1, lastErrno: code)
            }
        case .handshaking(let session):
            session.beginPass()
            do {
                guard case .done = try session.handshake() else { return }
            } catch {
                attemptFailed(AttemptFailure(.transport, error.description))
                return
            }
            progress = true
            guard verifyHostKey(session) else { return }
            do {
                let authenticator = try Authenticator(
                    config: config, environment: ProcessInfo.processInfo.environment, logger: logger)
                phase = .authenticating(session, authenticator)
            } catch {
                attemptFailed(error)
                return
            }
            advanceSession(sshEvents: [])
        case .authenticating(let session, let authenticator):
            session.beginPass()
            do {
                guard try authenticator.advance(session) else { return }
            } catch {
                attemptFailed(error)
                return
            }
            established(session)
        case .established(let session):
            pump(session, events: sshEvents)
        }
    }

    private func verifyHostKey(_ session: SSHSession) -> Bool {
        let key: HostKey
        let known: KnownHostsFile
        do {
            key = try session.hostKey()
            known = try KnownHostsFile.load(path: config.knownHosts)
        } catch {
            attemptFailed(AttemptFailure(.transport, "\(error)"))
            return false
        }
        for warning in known.warnings { logger.warning("\(warning)") }
        switch HostKeyVerifier.verify(key: key, config: config, knownHosts: known) {
        case .trusted(let source):
            logger.debug(
                "host key trusted", metadata: ["fingerprint": "\(key.fingerprintSHA256)", "source": "\(source)"])
            return true
        case .recordNew:
            do {
                try KnownHostsFile.append(
                    host: config.knownHostsKey.host, port: config.knownHostsKey.port, key: key, to: config.knownHosts)
            } catch {
                attemptFailed(
                    AttemptFailure(.localTemporary, "cannot record the new host key in \(config.knownHosts): \(error)"))
                return false
            }
            logger.warning(
                "permanently added \(HostKeyVerifier.lookupName(config)) (\(key.algorithm) \(key.fingerprintSHA256)) to \(config.knownHosts) (host_key_policy = accept-new)"
            )
            return true
        case .refused(let message):
            attemptFailed(AttemptFailure(.hostKey, message))
            return false
        }
    }

    private func established(_ session: SSHSession) {
        attemptDeadline = nil
        failedHop = nil
        let now = clock.now
        if config.keepaliveInterval > .zero {
            session.configureKeepalive(intervalSeconds: max(1, Int(config.keepaliveInterval.components.seconds)))
            scheduleKeepalive(at: now.advanced(by: config.keepaliveInterval))
        }
        phase = .established(session)
        perform(machine.connected(now: now))
        var metadata: Logger.Metadata = ["ssh.methods": "\(session.negotiatedSummary)"]
        if let outage = retryLog.recovered(now: now) { metadata["after"] = "\(outage)" }
        logger.info("connected", metadata: metadata)
        // Serve the clients that waited, oldest first.
        for connection in connections.values.sorted(by: { $0.id < $1.id }) where connection.isHeld {
            connection.queue()
            openQueue.append(connection.id)
        }
        progress = true
    }

    /// `hop`: the jump host it failed at (status `hop`), if it did.
    func attemptFailed(_ failure: AttemptFailure, hop: String? = nil) {
        failedHop = hop
        var failure = failure
        failure.message += proxyExitNote()
        guard stopping == nil else {
            teardownSession(reason: "stopping", graceful: false)
            return
        }
        attemptDeadline = nil  // an attempt that failed before its socket existed must not time out later too
        notePreflightFailure(failure)
        teardownSession(reason: failure.message, graceful: false)
        let now = clock.now
        let action = machine.attemptFailed(failure.kind, message: failure.message, now: now, random: &random)
        switch failure.kind {
        case .hostKey, .authentication, .local:
            // Bounded by the policy (failed at once, or after a few attempts): each one is shown.
            logger.error("connection attempt failed: \(failure.message)")
        case .transport, .refused, .localTemporary, .resources:
            // Retried for as long as it takes: the first of a kind in full, then summaries.
            if case .waitUntil(let at) = action,
                let line = retryLog.failed(
                    reason: failure.message, step: machine.retryStep ?? .zero, next: now.duration(to: at), now: now)
            {
                logger.warning("\(line)", metadata: ["failures": "\(machine.failures)"])
            }
        }
        perform(action, logged: true)
    }

    /// `hop`: the jump host that ended it (status `hop`), if one did.
    func sessionLost(_ message: String, hop: String? = nil) {
        failedHop = hop ?? silentHop()
        let message = message + proxyExitNote()
        logger.warning("session lost: \(message)")
        teardownSession(reason: message, graceful: false)
        guard stopping == nil else { return }
        perform(machine.sessionLost(message: message, now: clock.now, random: &random))
    }

    /// Ends the current session (if any). Open forwarded connections are closed at once (their
    /// clients see the end of the stream); clients still waiting for a channel go back to being
    /// held for the next session.
    func teardownSession(reason: String, graceful: Bool) {
        switch phase {
        case .idle:
            endCarrier()
            return
        case .resolving, .jumping:
            endCarrier()
            phase = .idle
            attemptDeadline = nil
            return
        case .connectingTCP(let fd, _, _):
            Posix.close(fd)
            phase = .idle
            attemptDeadline = nil
            return
        case .handshaking(let session), .authenticating(let session, _), .established(let session):
            if graceful, pending == nil, case .established = phase {
                _ = try? session.disconnect(reason: reason)
            }
            session.abandon()
            endCarrier()
        }
        for connection in connections.values {
            connection.sessionLost()  // open ones are closed, waiting ones held again
            if case .gone = connection.state { connections[connection.id] = nil }
        }
        openQueue.removeAll()
        for connection in scheduled { connection.scheduled = false }
        scheduled.removeAll()
        visiting.removeAll()
        arrivalsCheckedAt = 0
        pending = nil
        nextKeepalive = nil
        livenessProbe = nil
        drainInFlight = false
        idleReplies = IdleReplies()
        sendRoom = nil
        attemptDeadline = nil
        phase = .idle
        progress = true
    }

    /// Closes one forwarded connection from outside a pass (timers, commands, client gone).
    /// The channel, if any, is closed by the next pass (libssh2 calls stay in the pass).
    func drop(_ connection: ForwardedConnection, reason: String?) {
        if let reason { logger.info("closing connection: \(reason)", metadata: ["client": "\(connection.peer)"]) }
        connection.closeClient()
        switch connection.state {
        case .abandoned:
            // Its channel open is under way inside libssh2, perhaps half-sent, and libssh2 wants
            // that very call repeated before any other send: the open queue finishes it, then
            // the channel is closed (`openChannels`).
            break
        case .closing:
            schedule(connection)  // its channel is closed by a pass
        case .gone:
            connections[connection.id] = nil
            openQueue.removeAll { $0 == connection.id }
        case .held, .queued, .opening, .open:
            assertionFailure("a connection whose client was closed is \(connection.state)")
        }
        progress = true
    }
}
