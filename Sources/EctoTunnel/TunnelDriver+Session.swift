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
        let now = clock.now
        attemptDeadline = now.advanced(by: config.connectTimeout)
        logger.debug("connecting")
        let addresses: [sockaddr_storage]
        do {
            addresses = try SocketAddress.resolve(host: config.target.host, port: config.target.port)
        } catch {
            attemptFailed(AttemptFailure(.transport, "cannot resolve \(config.target.host): \(error.operation)"))
            return
        }
        connect(addresses, from: 0, lastErrno: 0)
    }

    /// Tries `addresses[index...]` in order until a connect is in flight or succeeded.
    private func connect(_ addresses: [sockaddr_storage], from start: Int, lastErrno: Int32) {
        var lastErrno = lastErrno
        for index in start..<addresses.count {
            var address = addresses[index]
            let fd = socket(Int32(address.ss_family), Int32(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
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
                startHandshake(fd)
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
        attemptFailed(
            AttemptFailure(
                lastErrno == ECONNREFUSED ? .refused : .transport,
                "cannot connect to \(config.target.host):\(config.target.port): \(reason)"))
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
        Posix.setOption(fd, Int32(IPPROTO_TCP), TCP_USER_TIMEOUT, Int32(clamping: 2 * Int(interval) * config.keepaliveCountMax * 1000))
    }

    private func startHandshake(_ fd: Int32) {
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
            let preferred = known.knownAlgorithms(host: config.target.host, port: Int(config.target.port))
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
        case .idle:
            return
        case .connectingTCP(let fd, let addresses, let index):
            guard !sshEvents.isEmpty else { return }
            let code = Posix.socketError(fd)
            if code == 0 {
                startHandshake(fd)
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
            pump(session, socketReadable: !sshEvents.isDisjoint(with: [.input, .hangUp, .error]))
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
            logger.debug("host key trusted", metadata: ["fingerprint": "\(key.fingerprintSHA256)", "source": "\(source)"])
            return true
        case .recordNew:
            do {
                try KnownHostsFile.append(host: config.target.host, port: Int(config.target.port), key: key, to: config.knownHosts)
            } catch {
                attemptFailed(AttemptFailure(.local, "cannot record the new host key in \(config.knownHosts): \(error)"))
                return false
            }
            logger.warning(
                "permanently added \(HostKeyVerifier.lookupName(config)) (\(key.algorithm) \(key.fingerprintSHA256)) to \(config.knownHosts) (host_key_policy = accept-new)")
            return true
        case .refused(let message):
            attemptFailed(AttemptFailure(.hostKey, message))
            return false
        }
    }

    private func established(_ session: SSHSession) {
        attemptDeadline = nil
        let now = clock.now
        if config.keepaliveInterval > .zero {
            session.configureKeepalive(intervalSeconds: max(1, Int(config.keepaliveInterval.components.seconds)))
            nextKeepalive = now.advanced(by: config.keepaliveInterval)
        }
        phase = .established(session)
        perform(machine.connected(now: now))
        logger.info("connected", metadata: ["ssh.methods": "\(session.negotiatedSummary)"])
        // Serve the clients that waited, oldest first.
        for connection in connections.values.sorted(by: { $0.id < $1.id }) where connection.phase == .held {
            connection.phase = .queued
            openQueue.append(connection.id)
        }
        progress = true
    }

    func attemptFailed(_ failure: AttemptFailure) {
        guard stopping == nil else {
            teardownSession(reason: "stopping", graceful: false)
            return
        }
        notePreflightFailure(failure)
        switch failure.kind {
        case .transport, .refused: logger.warning("connection attempt failed: \(failure.message)")
        case .hostKey, .authentication, .local: logger.error("connection attempt failed: \(failure.message)")
        }
        teardownSession(reason: failure.message, graceful: false)
        perform(machine.attemptFailed(failure.kind, message: failure.message, now: clock.now, random: &random))
    }

    func sessionLost(_ message: String) {
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
        }
        for connection in connections.values {
            switch connection.phase {
            case .open, .closing:
                connection.closeClient()
                connection.channel = nil
                connections[connection.id] = nil
            case .opening, .queued:
                connection.channel = nil
                if connection.clientClosed {
                    connections[connection.id] = nil  // left while its channel was opening
                } else {
                    connection.phase = .held
                }
            case .held:
                break
            }
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
        attemptDeadline = nil
        phase = .idle
        progress = true
    }

    /// Closes one forwarded connection from outside a pass (timers, commands, client gone).
    /// The channel, if any, is closed by the next pass (libssh2 calls stay in the pass).
    func drop(_ connection: ForwardedConnection, reason: String?) {
        if let reason { logger.info("closing connection: \(reason)", metadata: ["client": "\(connection.peer)"]) }
        connection.closeClient()
        if connection.phase == .opening {
            // Its channel open is under way inside libssh2, perhaps half-sent, and libssh2 wants
            // that very call repeated before any other send: the open queue finishes it, then
            // the channel is closed (`openChannels`).
            progress = true
            return
        }
        if connection.channel == nil {
            connections[connection.id] = nil
            openQueue.removeAll { $0 == connection.id }
        } else {
            connection.phase = .closing
            schedule(connection)  // its channel is closed by a pass
        }
        progress = true
    }
}

/// Public key authentication, non-blocking: ssh-agent keys first, then the identity file.
final class Authenticator {
    enum Step {
        case listMethods
        case agent(SSHAgent, index: Int, count: Int)
        case keyFile
        case exhausted
    }

    let user: String
    let agentSocket: String?
    let key: PrivateKeyMaterial?
    let logger: Logger
    var step: Step = .listMethods
    var tried: [String] = []
    var agentProblem: String?

    init(config: TunnelConfig, environment: [String: String], logger: Logger) throws(AttemptFailure) {
        self.user = config.target.user ?? "root"
        self.logger = logger
        let socket = environment["SSH_AUTH_SOCK"].flatMap { $0.isEmpty ? nil : $0 }
        self.agentSocket = socket
        self.key = try Credentials.loadPrivateKey(config, environment: environment)
        if socket == nil && key == nil {
            throw AttemptFailure(
                .local,
                "no credentials: SSH_AUTH_SOCK is not set (no ssh-agent) and no identity_file is configured")
        }
    }

    /// Returns true once authenticated, false when it must wait for the socket.
    func advance(_ session: SSHSession) throws(AttemptFailure) -> Bool {
        while true {
            switch step {
            case .listMethods:
                let methods: [String]?
                do {
                    guard case .done(let result) = try session.authenticationMethods(user: user) else { return false }
                    methods = result
                } catch {
                    throw AttemptFailure(error.isTransportFailure ? .transport : .authentication, error.description)
                }
                guard let methods else { return true }
                guard methods.contains("publickey") else {
                    throw AttemptFailure(
                        .authentication, "the server does not offer public key authentication for \(user) (offers: \(methods.joined(separator: ", ")))")
                }
                step = startAgent(session)
            case .agent(let agent, let index, let count):
                guard index < count else {
                    step = key == nil ? .exhausted : .keyFile
                    continue
                }
                do {
                    guard case .done = try agent.authenticate(user: user, identity: index) else { return false }
                    logger.info("authenticated with an ssh-agent key", metadata: ["key": "\(describeAgentKey(agent, index))"])
                    return true
                } catch {
                    if error.isTransportFailure { throw AttemptFailure(.transport, error.description) }
                    tried.append("agent key \(describeAgentKey(agent, index))")
                    step = .agent(agent, index: index + 1, count: count)
                }
            case .keyFile:
                guard let key else {
                    step = .exhausted
                    continue
                }
                do {
                    guard case .done = try session.authenticate(user: user, privateKey: key.bytes, passphrase: key.passphrase)
                    else { return false }
                    logger.info("authenticated with identity file", metadata: ["identity_file": "\(key.path)"])
                    return true
                } catch {
                    if error.isTransportFailure { throw AttemptFailure(.transport, error.description) }
                    if !error.isAuthenticationRefused {
                        // Not the server's verdict: libssh2 could not use the key (wrong
                        // passphrase shows up as a protocol error, "Private key unpack failed").
                        let hint = key.passphrase == nil && key.isEncryptedOpenSSHKey
                            ? "the key is encrypted: set identity_passphrase_file or identity_passphrase_credential"
                            : key.passphrase != nil ? "wrong passphrase, or an unsupported key format (use ed25519 or ecdsa)"
                            : "unsupported or damaged key (use an OpenSSH ed25519 or ecdsa key)"
                        throw AttemptFailure(.local, "cannot use private key \(key.path): \(hint) (\(error.message))")
                    }
                    tried.append("identity file \(key.path)")
                    step = .exhausted
                }
            case .exhausted:
                var message = "the server refused authentication as \(user)"
                message += tried.isEmpty ? "" : "; tried: " + tried.joined(separator: ", ")
                if let agentProblem { message += "; \(agentProblem)" }
                throw AttemptFailure(.authentication, message)
            }
        }
    }

    private func startAgent(_ session: SSHSession) -> Step {
        guard let agentSocket else { return key == nil ? .exhausted : .keyFile }
        do {
            let agent = try SSHAgent(session: session, socketPath: agentSocket)
            let identities = try agent.connectAndListIdentities()
            if identities.isEmpty { agentProblem = "the ssh-agent at \(agentSocket) holds no keys" }
            return .agent(agent, index: 0, count: identities.count)
        } catch {
            agentProblem = "ssh-agent at \(agentSocket) not usable: \(error.message)"
            logger.warning("\(agentProblem!)")
            return key == nil ? .exhausted : .keyFile
        }
    }

    private func describeAgentKey(_ agent: SSHAgent, _ index: Int) -> String {
        (try? HostKey(blob: agent.identityBlob(index)))?.fingerprintSHA256 ?? "#\(index)"
    }
}
