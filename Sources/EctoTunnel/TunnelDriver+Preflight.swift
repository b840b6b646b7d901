import EctoPlatform
import EctoStatus
#if canImport(Glibc)
import Glibc
#endif

/// A pre-flight in progress on this driver: a client of our own (one end of a socketpair) that
/// waits for its channel like any accepted client, so the new session is proven by exactly the
/// code that will serve real clients: resolve, connect, handshake, host key, authentication,
/// and a channel opened to `remote`.
final class PreflightProbe {
    /// The probe's connection in `connections` (its client end is ours).
    var connectionID: UInt64 = 0
    /// The other end of the socketpair, closed when the pre-flight ends.
    var peerFD: Int32
    var stage = "resolve"
    var done = false

    init(peerFD: Int32) { self.peerFD = peerFD }
}

/// Make-before-break (`Tunnel.prepare`): the driver of a configuration change starts without the
/// listener and proves its session first. Its status says how far it got (`TunnelStatus.preflight`);
/// the supervisor then hands it the listener (`.adopt`) or stops it, and the old session serves on.
extension TunnelDriver {
    func startPreflight() {
        var fds: [Int32] = [-1, -1]
        let type = Int32(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue)
        guard socketpair(AF_UNIX, type, 0, &fds) == 0 else {
            let reason = String(cString: strerror(errno))
            handle.update(notify: true) { $0.preflight = .failed(stage: "local", reason: "socketpair: \(reason)") }
            return
        }
        let probe = PreflightProbe(peerFD: fds[1])
        preflight = probe
        // Held (no session yet) until the session is up, then queued for its channel like any client.
        probe.connectionID = admit(fd: fds[0], peer: "127.0.0.1:0", holdDeadline: clock.now.advanced(by: .seconds(86_400))).id
        logger.info("pre-flight: proving the new session before it takes over", metadata: ["remote": "\(config.remote)"])
        handle.update(notify: true) { $0.preflight = .running(stage: probe.stage) }
    }

    /// After each turn of the loop: how far the probe got.
    func checkPreflight() {
        guard let probe = preflight, !probe.done else { return }
        guard let connection = connections[probe.connectionID], !connection.clientClosed else {
            // Gone before its channel opened: the server refused the channel (or the hold ended).
            finishPreflight(
                .failed(
                    stage: "channel",
                    reason: "the server refused a channel to \(config.remote) (nothing listens there as seen from the server, or it does not allow forwarding)"))
            return
        }
        if connection.phase == .open {
            finishPreflight(.passed)
            drop(connection, reason: nil)  // its channel is closed by the next pass
            return
        }
        if machine.state == .backoff || machine.state == .failed {
            finishPreflight(.failed(stage: probe.stage, reason: machine.lastError ?? "the session could not be established"))
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
        case .localTemporary: stage = failure.message.hasPrefix("cannot record the new host key") ? "host key" : "credentials"
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
        if probe.peerFD >= 0 {
            Glibc.close(probe.peerFD)
            probe.peerFD = -1
        }
        switch verdict {
        case .passed: logger.info("pre-flight passed: the new session is up and opened a channel to \(config.remote)")
        case .failed(let stage, let reason): logger.warning("pre-flight failed at \(stage): \(reason)")
        case .running: break
        }
        handle.update(notify: true) { $0.preflight = verdict }
    }

    /// Closes the probe's own end when the driver ends without a verdict.
    func endPreflight() {
        guard let probe = preflight, probe.peerFD >= 0 else { return }
        Glibc.close(probe.peerFD)
        probe.peerFD = -1
    }
}
