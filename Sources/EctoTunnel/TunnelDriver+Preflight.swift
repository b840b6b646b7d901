import EctoConfig
import EctoPlatform
import EctoStatus
#if canImport(Glibc)
import Glibc
#endif

/// A pre-flight in progress on this driver: one client of our own per forward (one end of a
/// socketpair each) that waits for its channel like any accepted client, so the new session is
/// proven by exactly the code that will serve real clients: resolve, connect, handshake, host key,
/// authentication, and a channel opened to every forward's `remote` (a typo in the third forward's
/// destination fails the change as surely as one in the first).
final class PreflightProbe {
    /// The probe's connections in `connections`, one per forward in order (their client ends are ours).
    var connectionIDs: [UInt64] = []
    /// The other ends of the socketpairs, closed when the pre-flight ends.
    var peerFDs: [Int32] = []
    /// Forwards whose channel opened (their probe connection is dropped at once).
    var opened: Set<Int> = []
    var stage = "resolve"
    var done = false
}

/// Make-before-break (`Tunnel.prepare`): the driver of a configuration change starts without the
/// listener and proves its session first. Its status says how far it got (`TunnelStatus.preflight`);
/// the supervisor then hands it the listener (`.adopt`) or stops it, and the old session serves on.
extension TunnelDriver {
    func startPreflight() {
        let probe = PreflightProbe()
        preflight = probe
        let type = Int32(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue)
        for forward in config.forwards.indices {
            var fds: [Int32] = [-1, -1]
            guard socketpair(AF_UNIX, type, 0, &fds) == 0 else {
                let reason = String(cString: strerror(errno))
                finishPreflight(.failed(stage: "local", reason: "socketpair: \(reason)"))
                return
            }
            probe.peerFDs.append(fds[1])
            // Held (no session yet) until the session is up, then queued for its channel like any client.
            guard
                let connection = admit(
                    fd: fds[0], peer: Endpoint(host: "127.0.0.1", port: 0), forward: forward,
                    holdDeadline: clock.now.advanced(by: .seconds(86_400)))
            else {
                finishPreflight(.failed(stage: "local", reason: "cannot watch the probe's socket with epoll"))
                return
            }
            probe.connectionIDs.append(connection.id)
        }
        logger.info(
            "pre-flight: proving the new session before it takes over",
            metadata: ["remote": "\(config.forwards.map(\.remote.description).joined(separator: ", "))"])
        handle.update(notify: true) { $0.preflight = .running(stage: probe.stage) }
    }

    /// After each turn of the loop: how far the probe got.
    func checkPreflight() {
        guard let probe = preflight, !probe.done else { return }
        for (forward, id) in probe.connectionIDs.enumerated() where !probe.opened.contains(forward) {
            guard let connection = connections[id], connection.isClientOpen else {
                // Gone before its channel opened: the server refused the channel (or the hold ended).
                finishPreflight(
                    .failed(
                        stage: "channel",
                        reason:
                            "the server refused a channel to \(config.forwards[forward].remote) (nothing listens there as seen from the server, or it does not allow forwarding)"
                    ))
                return
            }
            if connection.isOpen {
                probe.opened.insert(forward)
                drop(connection, reason: nil)  // its channel is closed by the next pass
            }
        }
        if probe.opened.count == probe.connectionIDs.count {
            finishPreflight(.passed)
            return
        }
        if machine.state == .backoff || machine.state == .failed {
            finishPreflight(
                .failed(stage: probe.stage, reason: machine.lastError ?? "the session could not be established"))
            return
        }
        let stage = preflightStage ?? probe.stage
        if stage != probe.stage {
            probe.stage = stage
            handle.update(notify: true) { $0.preflight = .running(stage: stage) }
        }
    }

    /// A failed attempt during the pre-flight, with the stage it failed at (called by `attemptFailed`
    /// while the phase still shows where it was).
    func notePreflightFailure(_ failure: AttemptFailure) {
        guard let probe = preflight, !probe.done else { return }
        let stage: String
        switch failure.kind {
        case .hostKey: stage = "host key"
        case .authentication: stage = "authentication"
        case .local: stage = "credentials"
        case .localTemporary:
            stage = failure.message.hasPrefix("cannot record the new host key") ? "host key" : "credentials"
        case .resources: stage = preflightStage ?? probe.stage
        case .refused: stage = "connect"
        case .transport:
            stage = failure.message.hasPrefix("cannot resolve") ? "resolve" : preflightStage ?? probe.stage
        }
        finishPreflight(.failed(stage: stage, reason: failure.message))
    }

    private var preflightStage: String? {
        switch phase {
        case .idle: return nil
        case .resolving: return "resolve"
        case .connectingTCP, .jumping: return "connect"
        case .handshaking: return "handshake"
        case .authenticating: return "authentication"
        case .established: return "channel"
        }
    }

    private func finishPreflight(_ verdict: TunnelStatus.Preflight) {
        guard let probe = preflight else { return }
        probe.done = true
        closePeers(probe)
        switch verdict {
        case .passed:
            let remotes = config.forwards.map(\.remote.description).joined(separator: ", ")
            logger.info("pre-flight passed: the new session is up and opened a channel to \(remotes)")
        case .failed(let stage, let reason): logger.warning("pre-flight failed at \(stage): \(reason)")
        case .running: break
        }
        handle.update(notify: true) { $0.preflight = verdict }
    }

    /// Closes the probe's own end when the driver ends without a verdict.
    func endPreflight() {
        guard let probe = preflight else { return }
        closePeers(probe)
    }

    private func closePeers(_ probe: PreflightProbe) {
        for fd in probe.peerFDs { Glibc.close(fd) }
        probe.peerFDs = []
    }
}
