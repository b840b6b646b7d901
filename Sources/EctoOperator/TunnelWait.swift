import EctoConfig
import EctoProbe
import EctoStatus
#if canImport(Glibc)
import Glibc
#endif

/// Waiting until a tunnel is up (after `connect` or `target`), and until its gateway answers.
public enum TunnelWait {
    /// One look at the tunnel.
    public enum Poll {
        /// Its status now.
        case status(TunnelStatus)
        /// No answer this time (the daemon is starting): look again.
        case retry
        /// The tunnel is gone: stop waiting.
        case gone
    }

    /// How the wait ended.
    public enum Outcome {
        /// Up (on `target`, when one was given).
        case up(TunnelStatus)
        /// Failed (on `target`): it needs the operator.
        case failed(TunnelStatus)
        /// Disabled: it will not come up by itself (only with `stopWhenDisabled`).
        case disabled(TunnelStatus)
        /// Not up within the time, or the tunnel went away; the last status seen.
        case notUp(last: TunnelStatus?)
    }

    /// Looks at the tunnel every 100 ms (`poll`) until it is up or failed on `target` (any target
    /// when nil), disabled (with `stopWhenDisabled`), or `timeout` passed. Errors of `poll` end
    /// the wait and are rethrown.
    public static func untilUp(
        target: String? = nil, stopWhenDisabled: Bool = false, timeout: Duration, poll: () throws -> Poll
    ) rethrows -> Outcome {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        var last: TunnelStatus?
        while ContinuousClock.now < deadline {
            switch try poll() {
            case .gone:
                return .notUp(last: last)
            case .retry:
                break
            case .status(let current):
                last = current
                if target == nil || current.target == target {
                    switch current.state {
                    case .up: return .up(current)
                    case .failed: return .failed(current)
                    case .connecting, .backoff, .down: break
                    }
                }
                if stopWhenDisabled && !current.enabled { return .disabled(current) }
            }
            usleep(100_000)
        }
        return .notUp(last: last)
    }

    /// The gateway behind a tunnel that is up, checked from here with `token`: HTTP until it
    /// answers (or refuses the token) or `deadline` passes, then the WebSocket OpenClaw's clients
    /// use (does it take the token?).
    public static func gateway(at endpoint: Endpoint, token: String?, deadline: ContinuousClock.Instant) -> ProbeResult
    {
        let options = ProbeOptions(token: token)
        var result = Prober.run(.http(path: "/"), endpoint: endpoint, options: options)
        while !result.ok && !result.tokenRefused && ContinuousClock.now < deadline {
            usleep(500_000)
            result = Prober.run(.http(path: "/"), endpoint: endpoint, options: options)
        }
        if result.ok {
            let websocket = Prober.run(.websocket(path: "/"), endpoint: endpoint, options: options)
            if websocket.tokenRefused { result = websocket }
        }
        return result
    }
}
